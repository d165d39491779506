"""Message bodies: with ``accepts_body`` the lines after the command reach the handler untouched."""

from lab_utils_common.socket_comm import Server
from lab_utils_common.socket_comm.message import Message


class Loader(Server):
    accepts_body = True

    def create_parser(self):
        super().create_parser()
        self.add_command("load", self.load, "loads rows").add_argument("table")

    def load(self):
        self.reply = f"{self.namespace.table}|{self.message}|{self.body}"


class Plain(Server):
    def create_parser(self):
        super().create_parser()
        self.add_command("words", self.words, "its words").add_argument("word", nargs="*")

    def words(self):
        self.reply = "|".join(self.namespace.word) + f"|body={self.body!r}"


def test_body_reaches_the_handler_untouched(socket_server_factory):
    running = socket_server_factory(Loader)
    body = '{"time": "2024-05-01", "note": "a {b} c"}\n  spaced  {braced} \n'
    assert running.send("load beam\n" + body) == f"beam|load beam|{body}"
    big = "x,y\n" + "1, {2}\n" * 100_000  # long: prepared on the parse lane
    assert running.send("load beam\n" + big) == f"beam|load beam|{big}"
    # options in the body are not options of the command
    assert running.send("load beam\n--no-such-option") == "beam|load beam|--no-such-option"


def test_without_accepts_body_a_message_is_one_command_line_as_in_0_5_x(socket_server_factory):
    running = socket_server_factory(Plain)
    assert running.send("words a\nb {c d}") == "a\nb|c d|body=''"


def test_message_from_text():
    assert Message.from_text("#auth t\nload x\nrow 1\nrow 2", with_body=True) == Message("load x", "row 1\nrow 2", "t")
    assert Message.from_text("load x  \n") == Message("load x", "", None)
