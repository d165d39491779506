"""Server with real sockets: 0.5.x-style subclasses, built-in commands, replies, limits, state."""

import threading

import pytest

from lab_utils_common.socket_comm import Client, MessageError, Server

HELLO_REPLY = "hello there"


class LabServer(Server):
    """A 0.5.x-style subclass: commands added to self.sp, handlers set self.reply."""

    def create_parser(self):
        super().create_parser()
        sp = self.sp.add_parser("hello", description="greets")
        sp.set_defaults(func=self.hello, which="hello")
        sp = self.sp.add_parser("set_point", description="sets a set point")
        sp.add_argument("sensor", help="sensor name")
        sp.add_argument("value", type=float, help="set point")
        sp.set_defaults(func=self.set_point, which="set_point")
        self.sp.add_parser("boom", description="fails").set_defaults(func=self.boom, which="boom")
        self.sp.add_parser("refuse", description="refuses").set_defaults(func=self.refuse, which="refuse")
        self.sp.add_parser("thread", description="handler thread").set_defaults(func=self.thread, which="thread")
        self.sp.add_parser("nofunc", description="forgot func").set_defaults(which="nofunc")
        sp = self.sp.add_parser("blob", description="reply of n bytes")
        sp.add_argument("size", type=int)
        sp.set_defaults(func=self.blob, which="blob")

    def hello(self):
        self.reply = HELLO_REPLY

    def set_point(self):
        self.reply = f"{self.namespace.sensor} -> {self.namespace.value} ({self.message})"

    def boom(self):
        raise RuntimeError("pump 3 does not answer")

    def refuse(self):
        raise MessageError("not now")

    def thread(self):
        self.reply = threading.current_thread().name

    def blob(self):
        self.reply = "x" * self.namespace.size


@pytest.fixture
def lab_server(socket_server_factory):
    return socket_server_factory(LabServer)


def test_subclass_command_with_braced_argument(lab_server):
    assert lab_server.send("set_point {my sensor} 3.5") == "my sensor -> 3.5 (set_point {my sensor} 3.5)"
    assert lab_server.send("hello") == HELLO_REPLY


def test_invalid_message_gets_error_and_full_help(lab_server):
    reply = lab_server.send("bogus")
    assert reply.startswith("Error! argument")
    assert "invalid choice: 'bogus'" in reply and "DAEMON HELP" in reply and "set_point" in reply
    assert lab_server.send("set_point x notanumber").startswith("Error! argument value: invalid float value")


def test_handler_exception_is_reported_and_daemon_keeps_serving(lab_server):
    assert lab_server.send("boom") == "Unknown exception! Check daemon log!\nRuntimeError: pump 3 does not answer"
    assert lab_server.send("refuse") == "Error! not now"
    assert lab_server.send("nofunc").startswith("Error! no command given")
    assert lab_server.send("hello") == HELLO_REPLY


def test_status_and_help(lab_server):
    lab_server.send("hello")
    status = dict(line.split(": ", 1) for line in lab_server.send("status").splitlines())
    assert status["status"] == "running"
    assert int(status["pid"]) > 0 and int(status["requests"]) >= 1
    assert "set_point" in lab_server.send("help")


def test_handlers_run_on_the_start_daemon_thread(lab_server):
    # start_daemon runs on the fixture's "socket-server" thread: handlers stay there, as in 0.5.x
    assert lab_server.send("thread") == "socket-server"


def test_quit_replies_goodbye_and_stops(socket_server_factory):
    lab_server = socket_server_factory(LabServer, allow_unauthenticated_admin=True)
    assert lab_server.send("quit") == "Goodbye!"
    lab_server.thread.join(20)
    assert not lab_server.thread.is_alive()
    assert lab_server.server.lock is None  # PID lock released
    with pytest.raises(ConnectionRefusedError):
        lab_server.send("hello")


def test_one_mebibyte_message_and_large_reply(lab_server):
    word = "y" * (1024 * 1024 - 64)
    assert lab_server.send(f"set_point {word} 1").startswith(word)
    assert len(lab_server.send("blob 3000000")) == 3000000


def test_message_over_the_maximum_gets_clear_error(socket_server_factory):
    running = socket_server_factory(LabServer, settings={"max_message_size": 10_000})
    reply = running.send("set_point " + "z" * 50_000 + " 1")
    assert reply.startswith("Error! message too long: ")
    assert "the maximum is 10000 bytes (max_message_size)" in reply
    assert running.send("hello") == HELLO_REPLY


def test_max_message_size_from_config_and_environment(socket_server_factory, tmp_path, monkeypatch):
    ini = tmp_path / "server.ini"
    ini.write_text("[Overall]\nhost = 127.0.0.1\nport = 0\nmax_message_size = 5000000\n")
    monkeypatch.setenv("LABUTILS_SERVER_RECEIVE_TIMEOUT", "7.5")
    server = socket_server_factory(LabServer, config_file=str(ini)).server
    assert (server.max_message_size, server.receive_timeout) == (5_000_000, 7.5)


def test_bad_config_value_names_file_option_and_value(tmp_path):
    ini = tmp_path / "server.ini"
    ini.write_text("[Overall]\nport = fifteen\n")
    with pytest.raises(Exception, match=r"'port'.*server.ini.*'fifteen'"):
        Server(config_file=str(ini), pid_file_name=str(tmp_path / "x.pid"))


class ConcurrentServer(Server):
    """Opts in to concurrent handlers; 'meet NAME' waits until two requests are inside at once."""

    handler_threads = 4

    def __init__(self, *args, **kwargs):
        self.barrier = threading.Barrier(2, timeout=20)
        super().__init__(*args, **kwargs)

    def create_parser(self):
        super().create_parser()
        sp = self.sp.add_parser("meet")
        sp.add_argument("name")
        sp.set_defaults(func=self.meet, which="meet")

    def meet(self):
        self.reply = f"before {self.namespace.name}"
        self.barrier.wait()  # the other request sets its own reply meanwhile
        self.reply += f" after {self.namespace.name} / {self.message}"


def test_concurrent_handlers_keep_per_request_state(socket_server_factory):
    running = socket_server_factory(ConcurrentServer)
    replies = {}

    def ask(name):
        replies[name] = running.send(f"meet {name}")

    threads = [threading.Thread(target=ask, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert replies == {"a": "before a after a / meet a", "b": "before b after b / meet b"}


class SlowServer(Server):
    """'wait' blocks the (single) handler thread until the test releases it."""

    def __init__(self, *args, **kwargs):
        self.release = threading.Event()
        self.entered = threading.Event()
        super().__init__(*args, **kwargs)

    def create_parser(self):
        super().create_parser()
        self.sp.add_parser("wait").set_defaults(func=self.wait, which="wait")

    def wait(self):
        self.entered.set()
        self.release.wait(30)
        self.reply = "released"


def test_status_and_bad_messages_answered_while_a_command_runs(socket_server_factory):
    running = socket_server_factory(SlowServer)
    result = {}
    waiter = threading.Thread(target=lambda: result.setdefault("reply", running.send("wait")))
    waiter.start()
    assert running.server.entered.wait(20)
    assert "status: running" in running.send("status")
    assert running.send("bogus").startswith("Error!")
    running.server.release.set()
    waiter.join(20)
    assert result["reply"] == "released"


def test_stop_while_a_command_runs_past_shutdown_timeout_answers_with_an_error(socket_server_factory):
    running = socket_server_factory(SlowServer, settings={"shutdown_timeout": 0.2})
    result = {}
    waiter = threading.Thread(target=lambda: result.setdefault("reply", running.send("wait")))
    waiter.start()
    assert running.server.entered.wait(20)
    running.server.shutdown(wait=False)  # as SIGTERM does
    waiter.join(20)  # answered while the command still runs
    running.server.release.set()
    running.thread.join(20)
    assert not running.thread.is_alive()
    # not an empty reply, which a client would take for success
    assert result["reply"] == ("Error! the daemon is stopping and did not finish this request within 0.2 s "
                               "(shutdown_timeout); a command that was running may still complete")


def test_quit_flag_set_by_code_stops_the_daemon(socket_server_factory):
    running = socket_server_factory(Server, settings={"socket_timeout": 0.05})
    running.server.quit_flag = True  # the 0.5.x way, e.g. from another thread
    running.thread.join(20)
    assert not running.thread.is_alive()


def test_port_in_use_raises_oserror_naming_the_address(socket_server_factory, tmp_path):
    first = socket_server_factory(Server)
    second = Server(pid_file_name=str(tmp_path / "second.pid"), host="127.0.0.1", port=first.port)
    with pytest.raises(OSError, match=f"cannot bind 127.0.0.1:{first.port}"):
        second.start_daemon()
    assert second.lock is None


def test_client_reads_host_and_port_from_0_5_x_server_ini(socket_server_factory, tmp_path):
    running = socket_server_factory(LabServer)
    ini = tmp_path / "server.ini"
    ini.write_text(f"[Overall]\nhost = 127.0.0.1\nport = {running.port}\n")
    assert Client(config_file=str(ini)).send_message("hello") == HELLO_REPLY


def test_second_instance_fails_naming_lock_file_and_holder(tmp_path):
    import os

    from zc.lockfile import LockError

    from lab_utils_common.socket_comm import PidLockError
    pid_file = str(tmp_path / "one.pid")
    first = Server(pid_file_name=pid_file)
    try:
        with pytest.raises(PidLockError) as caught:
            Server(pid_file_name=pid_file)
        assert isinstance(caught.value, LockError)  # what 0.5.x callers catch
        assert caught.value.holder_pid == os.getpid()
        assert f"PID lock file {pid_file!r} is held by process {os.getpid()}" in str(caught.value)
    finally:
        first.close()
    Server(pid_file_name=pid_file).close()  # released


class ConfiguredServer(LabServer):
    """The 0.5.x way to read a daemon's own options: override config(), which the constructor calls."""

    device = "none"

    def config(self, filename):
        super().config(filename)
        import configparser
        parser = configparser.ConfigParser()
        parser.read(filename)
        self.device = parser.get("Instrument", "device")


def test_constructor_calls_an_overridden_config_and_arguments_still_win(socket_server_factory, tmp_path):
    ini = tmp_path / "server.ini"
    ini.write_text("[Overall]\nhost = 127.0.0.1\nport = 1\n\n[Instrument]\ndevice = /dev/ttyUSB3\n")
    running = socket_server_factory(ConfiguredServer, config_file=str(ini), host=None, port=0)
    assert running.server.device == "/dev/ttyUSB3"
    assert running.server.host == "127.0.0.1" and running.port != 1  # port=0 beat the file's 1
    assert running.send("hello") == HELLO_REPLY

    class ConfiguredClient(Client):
        def config(self, config_file):
            super().config(config_file)
            self.device = "read in config()"

    client = ConfiguredClient(config_file=str(ini), port=running.port, timeout=20)
    assert client.device == "read in config()" and client.port == running.port
    assert client.send_message("hello") == HELLO_REPLY
