"""lab-utils-client: prints the reply, exit status 0 / 1 error reply / 2 usage / 3 connection."""

import socket
import subprocess
import sys

import pytest

from tests.fixtures.ports import free_port
from tests.fixtures.tcp_peers import EchoServer

from lab_utils_common.socket_comm.cli import EXIT_CONNECTION, EXIT_ERROR_REPLY, EXIT_OK, EXIT_USAGE, join_words, main


@pytest.fixture
def server(socket_server_factory):
    return socket_server_factory(EchoServer)


def test_reply_printed_exit_0(server, capsys):
    assert main(["--host", "127.0.0.1", "--port", str(server.port), "echo", "a", "b c"]) == EXIT_OK
    assert capsys.readouterr().out == "a|b c\n"


def test_error_reply_exit_1(server, capsys):
    assert main(["--host", "127.0.0.1", "--port", str(server.port), "bogus"]) == EXIT_ERROR_REPLY
    assert capsys.readouterr().out.startswith("Error! argument")


def test_connection_refused_exit_3(capsys):
    port = free_port()
    assert main(["--host", "127.0.0.1", "--port", str(port), "status"]) == EXIT_CONNECTION
    assert f"cannot connect to 127.0.0.1:{port}" in capsys.readouterr().err


def test_bad_config_exit_2(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "missing.ini"), "status"]) == EXIT_USAGE
    assert "missing.ini" in capsys.readouterr().err


def test_config_file_and_token_file(server, tmp_path, capsys):
    ini = tmp_path / "server.ini"
    ini.write_text(f"[Overall]\nhost = 127.0.0.1\nport = {server.port}\n")
    assert main(["--config", str(ini), "echo", "{x y}"]) == EXIT_OK
    assert capsys.readouterr().out == "x y\n"


def test_join_words():
    assert join_words(["set {my sensor} 3"]) == "set {my sensor} 3"
    assert join_words(["set", "my sensor", "3"]) == "set {my sensor} 3"


def test_console_script_healthcheck(server):
    done = subprocess.run([sys.executable, "-m", "lab_utils_common.socket_comm.cli", "--host", "127.0.0.1",
                           "--port", str(server.port), "status"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("status: running")


def test_token_file_option(socket_server_factory, tmp_path, capsys):
    token = tmp_path / "token"
    token.write_text("s3cret-t0ken\n")
    running = socket_server_factory(EchoServer, token_file=str(token))
    where = ["--host", "127.0.0.1", "--port", str(running.port)]
    assert main([*where, "--token-file", str(token), "echo", "x"]) == EXIT_OK
    assert capsys.readouterr().out == "x\n"
    assert main([*where, "echo", "x"]) == EXIT_ERROR_REPLY
    assert capsys.readouterr().out.startswith("Error! authentication failed (no token given)")
    assert main([*where, "--token-file", str(tmp_path / "absent"), "echo", "x"]) == EXIT_USAGE
    assert str(tmp_path / "absent") in capsys.readouterr().err


def test_no_reply_in_time_exit_3(capsys):
    with socket.socket() as silent:  # accepts (in its backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        assert main(["--host", "127.0.0.1", "--port", str(port), "--timeout", "0.2", "status"]) == EXIT_CONNECTION
    assert f"no reply from 127.0.0.1:{port} within 0.2 s" in capsys.readouterr().err
