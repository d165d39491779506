"""A 0.5.x app may register its own ``status``, ``help`` or ``quit``: its command replaces the built-in."""

import pytest

from lab_utils_common.socket_comm import ArgumentParser, Server


class OwnCommandsInCreateParser(Server):
    """0.5.x way 1: override create_parser() and add to self.sp after super().create_parser()."""

    def create_parser(self):
        super().create_parser()
        sp = self.sp.add_parser("status", description="instrument status")
        sp.add_argument("--verbose", action="store_true", help="more detail")
        sp.set_defaults(func=self.own_status, which="status")
        self.sp.add_parser("help", description="own help").set_defaults(func=self.own_help, which="help")
        self.sp.add_parser("quit", description="own quit").set_defaults(func=self.own_quit, which="quit")

    def own_status(self):
        self.reply = "instrument: idle" + (" (verbose)" if self.namespace.verbose else "")

    def own_help(self):
        self.reply = "ask the lab manager"

    def own_quit(self):
        self.reply = "bye from the app"


class OwnCommandsAfterInit(Server):
    """0.5.x way 2: super().__init__(), then update_parser() adds to self.sp."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.update_parser()

    def update_parser(self):
        sp = self.sp.add_parser("status", description="instrument status")
        sp.set_defaults(func=self.own_status, which="status")
        self.sp.add_parser("help", description="own help").set_defaults(func=self.own_help, which="help")
        self.sp.add_parser("quit", description="own quit").set_defaults(func=self.own_quit, which="quit")

    def own_status(self):
        self.reply = "instrument: measuring"

    def own_help(self):
        self.reply = "see the wiki"

    def own_quit(self):
        self.reply = "quitting the app way"


@pytest.mark.parametrize("cls, status, help_text, goodbye", [
    (OwnCommandsInCreateParser, "instrument: idle", "ask the lab manager", "bye from the app"),
    (OwnCommandsAfterInit, "instrument: measuring", "see the wiki", "quitting the app way"),
])
def test_app_status_help_quit_replace_the_built_ins(socket_server_factory, cls, status, help_text, goodbye):
    running = socket_server_factory(cls, allow_unauthenticated_admin=True)
    assert running.send("status") == status
    assert running.send("help") == help_text
    # The replaced commands are listed once, in their place, with the app's description.
    reply = running.send("bogus")
    assert reply.startswith("Error! argument")
    assert reply.count("    status ") == 1 and "instrument status" in reply
    assert running.send("quit") == goodbye
    running.thread.join(20)
    assert not running.thread.is_alive(), "the app's own 'quit' must still stop the daemon"


def test_app_status_arguments_are_parsed(socket_server_factory):
    running = socket_server_factory(OwnCommandsInCreateParser)
    assert running.send("status --verbose") == "instrument: idle (verbose)"


def test_replacing_keeps_position_and_aliases():
    parser = ArgumentParser(prog="daemon", description="d", epilog="e")
    sp = parser.add_subparsers(title="command")
    sp.add_parser("quit", help="stops").set_defaults(which="quit")
    sp.add_parser("status", aliases=["st"], help="built-in").set_defaults(which="old")
    sp.add_parser("read").set_defaults(which="read")
    sp.add_parser("status", help="app").set_defaults(which="new")
    assert list(sp.choices) == ["quit", "status", "st", "read"]  # the old alias stays, as before 3.11
    assert parser.parse_args(["status"]).which == "new"
    assert [action.dest for action in sp._choices_actions] == ["quit", "status"]
