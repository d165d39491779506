"""Shared-token authentication: off by default, and when on nothing runs without the right token."""

import logging

import pytest

from lab_utils_common.socket_comm import Client, Server, TokenFileError

TOKEN = "0c7f-lab-token"


class RecordingServer(Server):
    def __init__(self, *args, **kwargs):
        self.ran = []
        super().__init__(*args, **kwargs)

    def create_parser(self):
        super().create_parser()
        self.sp.add_parser("touch").set_defaults(func=self.touch, which="touch")

    def touch(self):
        self.ran.append(self.message)
        self.reply = "touched"


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return str(path)


def test_auth_off_by_default_and_a_client_token_is_accepted(socket_server_factory, token_file):
    running = socket_server_factory(RecordingServer)
    assert running.send("touch") == "touched"
    assert running.send("touch", token_file=token_file) == "touched"  # the line is stripped
    assert running.server.ran == ["touch", "touch"]


def test_auth_on_refuses_missing_and_wrong_tokens(socket_server_factory, token_file, tmp_path, caplog):
    running = socket_server_factory(RecordingServer, token_file=token_file)
    wrong = tmp_path / "wrong"
    wrong.write_text("guess")
    with caplog.at_level(logging.WARNING):
        assert running.send("touch") == \
            "Error! authentication failed (no token given); the daemon needs the shared token (token_file)"
        assert running.send("touch", token_file=str(wrong)).startswith(
            "Error! authentication failed (wrong token)")
    assert running.server.ran == []
    refusals = [r.getMessage() for r in caplog.records if "Refused a message" in r.getMessage()]
    assert len(refusals) == 2 and "wrong token" in refusals[1]
    assert all(TOKEN not in r.getMessage() and "guess" not in r.getMessage() for r in caplog.records)
    assert running.send("touch", token_file=token_file) == "touched"
    assert running.server.ran == ["touch"]


def test_token_file_from_environment(socket_server_factory, token_file, monkeypatch):
    monkeypatch.setenv("LABUTILS_SERVER_TOKEN_FILE", token_file)
    running = socket_server_factory(RecordingServer)
    assert running.send("touch").startswith("Error! authentication failed")
    monkeypatch.setenv("LABUTILS_CLIENT_TOKEN_FILE", token_file)
    assert Client(host="127.0.0.1", port=running.port).send_message("touch") == "touched"


def test_missing_or_empty_token_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(TokenFileError, match="cannot read the token file .*nothing-here"):
        Client(token_file=str(tmp_path / "nothing-here"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(TokenFileError, match="is empty"):
        Server(pid_file_name=str(tmp_path / "x.pid"), token_file=str(empty))
