"""handler_threads = 0: handlers run on the event loop, on the start_daemon thread (no thread hop)."""

import threading

from tests.fixtures.ports import free_port, wait_for_port
from tests.lab_utils_common.socket_comm.test_server import HELLO_REPLY, LabServer


def test_inline_handlers_run_on_the_start_daemon_thread(socket_server_factory):
    running = socket_server_factory(LabServer, settings={"handler_threads": 0})
    assert running.send("hello") == HELLO_REPLY
    assert running.send("thread") == "socket-server"  # the fixture's start_daemon thread
    assert running.send("boom").startswith("Unknown exception! Check daemon log!\nRuntimeError")
    assert running.send("set_point {my sensor} 3.5") == "my sensor -> 3.5 (set_point {my sensor} 3.5)"
    long_message = "set_point {" + "s" * 5000 + "} 1"  # parsed on the parse lane, run inline
    assert running.send(long_message).startswith("s" * 5000 + " -> 1.0")
    assert running.send("status").startswith("status: running")
    running.stop()


def test_inline_handlers_quit_stops_the_daemon(socket_server_factory, tmp_path):
    server = LabServer(pid_file_name=str(tmp_path / "inline.pid"), host="127.0.0.1", port=free_port(),
                       allow_unauthenticated_admin=True)
    server.handler_threads = 0
    thread = threading.Thread(target=server.start_daemon, name="inline-main", daemon=True)
    thread.start()
    wait_for_port("127.0.0.1", server.port)
    from lab_utils_common.socket_comm import Client
    assert Client(host="127.0.0.1", port=server.port, timeout=20).send_message("quit") == "Goodbye!"
    thread.join(20)
    assert not thread.is_alive() and server.stopped.is_set()
