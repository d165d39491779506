"""Hostile messages against a real daemon process: any 1 MiB shape is answered, the daemon stays responsive.

Before the linear splitter and the parse lane, ``echo a a a ...`` of 1 MiB froze the daemon
for most of an hour (a quadratic regex on the network thread, holding the GIL): no other
client was answered and SIGTERM was ignored.
"""

import random
import threading

import pytest

from lab_utils_common.socket_comm.message import SPLIT_PATTERN, split_message, split_raw

MIB = 1024 * 1024

SHAPES = {
    "spaces": "echo " + "a " * (MIB // 2 - 3),
    "open braces": "echo " + "{" * (MIB - 5),
    "braced words": "echo " + "{a} " * (MIB // 4 - 2),
    "quotes": "echo " + '"a" ' * (MIB // 4 - 2),
    "options": "echo " + "-a " * (MIB // 3 - 2),
    "one braced value": "echo {" + "a " * (MIB // 2 - 4) + "}",
}


def test_linear_split_gives_the_0_5_x_words():
    rng = random.Random(11)
    for _ in range(5000):
        message = "".join(rng.choice("ab {}") for _ in range(rng.randint(0, 30)))
        assert split_raw(message) == SPLIT_PATTERN.split(message), message
        assert split_message(message) == [word.strip(" {}") for word in SPLIT_PATTERN.split(message)]


def _send_all_at_once(daemon, messages):
    replies, errors = {}, []

    def send(name, message):
        try:
            replies[name] = daemon.send(message)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=send, args=item) for item in messages.items()]
    for thread in threads:
        thread.start()
    return threads, replies, errors


def test_every_1_mib_shape_is_answered_and_status_answers_meanwhile(daemon_process, tmp_path):
    # A generous parse_timeout: on a busy machine the six messages queued on the parse lane
    # may take longer than the default 2 s together, and would then get the parse_timeout error.
    ini = tmp_path / "server.ini"
    ini.write_text("[Overall]\nparse_timeout = 120\n")
    daemon = daemon_process("--config", str(ini))
    threads, replies, errors = _send_all_at_once(daemon, SHAPES)
    status = daemon.send("status")  # the network thread is free while the long messages are parsed
    for thread in threads:
        thread.join(60)
    assert not errors
    assert status.startswith("status: running")
    assert replies["spaces"].startswith("Error! message has 524286 words, the maximum is 2048 (max_words)")
    assert replies["options"].startswith("Error! message has")
    assert replies["braced words"].startswith("Error! message has")
    assert replies["one braced value"] == "a " * (MIB // 2 - 5) + "a"
    assert replies["open braces"] == ""  # one word of braces only, stripped to nothing
    assert daemon.send("echo still {here and} well") == "still|here and|well"


def test_sigterm_stops_the_daemon_during_a_hostile_burst(daemon_process):
    daemon = daemon_process()
    threads, _, _ = _send_all_at_once(daemon, {f"{name} {i}": message for i in range(2)
                                               for name, message in SHAPES.items()})
    assert daemon.send("status").startswith("status: running")
    assert daemon.stop(timeout=30) == 0
    for thread in threads:
        thread.join(60)


def test_bad_input_log_lines_are_cut_and_rate_limited(daemon_process):
    daemon = daemon_process()
    bad = "bogus " + "x" * (MIB - 6)
    for _ in range(15):
        assert daemon.send(bad).startswith("Error! argument")
    assert daemon.send("echo ok") == "ok"
    log = daemon.log
    lines = [line for line in log.splitlines() if "Invalid message" in line]
    assert 1 <= len(lines) <= 10, lines  # bad_input_log_per_minute
    assert "(1048576 bytes, cut to 200 characters)" in lines[0]
    assert len(log) < 20_000


def test_an_error_reply_does_not_echo_a_megabyte(daemon_process):
    daemon = daemon_process()
    reply = daemon.send("echo --" + "x" * (MIB - 7))
    assert reply.startswith("Error! unrecognized arguments: --xxx")
    assert "bytes, cut to 200 characters)" in reply and len(reply) < 10_000


# ------------------------------------------------------------------ connection slots before authentication
IDLE_SOCKETS = 600  # more than max_connections (512) + max_unauthenticated_connections (64)


def _open_idle(port, count):
    import socket
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]


def test_hundreds_of_idle_sockets_lock_nobody_out(daemon_process):
    daemon = daemon_process()
    idle = _open_idle(daemon.port, IDLE_SOCKETS)
    try:
        assert daemon.send("status").startswith("status: running")
        assert daemon.send("echo still served") == "still|served"
        more = _open_idle(daemon.port, 100)  # a second wave, as reconnecting attackers do
        idle += more
        assert daemon.send("echo again") == "again"
    finally:
        for sock in idle:
            sock.close()


def test_with_a_token_idle_and_tokenless_sockets_lock_nobody_out(daemon_process, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    daemon = daemon_process("--config", str(_token_config(tmp_path, token_file)))
    idle = _open_idle(daemon.port, IDLE_SOCKETS)
    try:
        for sock in idle[::3]:
            sock.sendall(b"#auth wrong\n")  # refused, waiting for the end of their message
        for sock in idle[1::3]:
            sock.sendall(b"echo no token")
        assert daemon.send("echo ok", token_file=str(token_file)) == "ok"
        assert daemon.send("status", token_file=str(token_file)).startswith("status: running")
        assert daemon.send("echo ok").startswith("Error! authentication failed (no token given)")
    finally:
        for sock in idle:
            sock.close()


def _token_config(tmp_path, token_file):
    ini = tmp_path / "server.ini"
    ini.write_text(f"[Overall]\ntoken_file = {token_file}\n")
    return ini


# ------------------------------------------------------------------ admin commands
def test_quit_without_a_token_is_refused_and_the_daemon_keeps_serving(daemon_process):
    daemon = daemon_process()
    reply = daemon.send("quit")
    assert reply.startswith("Error! 'quit' is an admin command, refused: the daemon has no token (token_file)")
    assert "--allow-unauthenticated-admin" in reply
    assert daemon.send("echo alive") == "alive"
    assert daemon.process.poll() is None
    assert daemon.stop() == 0  # SIGTERM is the operator's way


def test_quit_with_the_token_or_explicitly_allowed(daemon_process, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    with_token = daemon_process("--config", str(_token_config(tmp_path, token_file)))
    assert with_token.send("quit", token_file=str(token_file)) == "Goodbye!"
    assert with_token.process.wait(30) == 0
    allowed = daemon_process("--allow-unauthenticated-admin")
    assert allowed.send("quit") == "Goodbye!"
    assert allowed.process.wait(30) == 0


def test_an_app_compiling_the_0_5_x_pattern_itself_gets_the_linear_splitter(socket_server_factory):
    import re

    from tests.fixtures.tcp_peers import EchoServer

    class OwnRegex(EchoServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            re.purge()  # else re's cache hands back the library's own compiled pattern object
            self.regex = re.compile(" (?![^{dl}{dr}]*{dr})".format(dl="{", dr="}"))  # as 0.5.x did

    running = socket_server_factory(OwnRegex)
    assert running.send("echo a {b c} d") == "a|b c|d"
    assert running.server._dispatcher.split("echo " + "a " * 200_000)[:2] == ["echo", "a"]


@pytest.mark.parametrize("words", ["a " * 3000, "{a b} " * 3000, "a " * 2046 + "{b c}"])
def test_the_word_count_of_a_refusal_is_exact_with_and_without_braces(socket_server_factory, words):
    """Brace-free messages are counted without being split (a flood costs little); the count is
    the one the splitter gives, and a message just under the limit still runs."""
    from lab_utils_common.socket_comm.message import split_message

    running = socket_server_factory(settings={"max_words": 2048})
    message = "status " + words.strip()
    reply = running.send(message)
    count = len(split_message(message))
    if count > 2048:
        assert reply.startswith(f"Error! message has {count} words, the maximum is 2048 (max_words)")
    else:
        assert "max_words" not in reply
