"""The Client logs as lab-utils 0.5.4's does: same logger, levels and lines, errors included."""

import logging

import pytest
from lab_utils.socket_comm import Client as OldClient

from tests.fixtures.ports import free_port

from lab_utils_common.socket_comm import Client


class Keep(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def kept(monkeypatch):
    # Both libraries keep the application's name (configure_logging's logger_name) in a global,
    # which other tests of this process may have set: the same app name on both sides.
    import lab_utils.custom_logging as old_logging

    import lab_utils_common.custom_logging.levels as new_logging
    monkeypatch.setattr(old_logging, "APP_NAME", "pump-app")
    monkeypatch.setattr(new_logging, "_APP_NAME", "pump-app")
    handler = Keep()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler.records
    root.removeHandler(handler)
    root.setLevel(previous)


def _lines(records):
    # INFO and above: the configuration loader's DEBUG lines are new (docs/socket-daemon.md)
    return [(record.name, record.levelname, record.getMessage()) for record in records
            if record.levelno >= logging.INFO and "socket_comm/server" not in record.pathname]


def test_client_records_match_0_5_4(kept, old_lab_utils_server):
    OldClient(host="127.0.0.1", port=old_lab_utils_server).send_message("echo a b")
    old = _lines(kept)
    kept.clear()
    Client(host="127.0.0.1", port=old_lab_utils_server).send_message("echo a b")
    assert _lines(kept) == old == [("pump-app", "INFO", "Sending message to the server: echo a b"),
                                   ("pump-app", "INFO", "Reply received: a|b")]


def test_client_failure_is_logged_at_error_as_0_5_4(kept):
    port = free_port()  # nothing listens
    with pytest.raises(OSError):
        OldClient(host="127.0.0.1", port=port).send_message("status")
    old = _lines(kept)
    kept.clear()
    with pytest.raises(OSError):
        Client(host="127.0.0.1", port=port, timeout=5).send_message("status")
    new = _lines(kept)
    assert [(name, level) for name, level, _ in new] == [(name, level) for name, level, _ in old]
    assert new[-1][2].startswith("ConnectionRefusedError: ") and old[-1][2].startswith("ConnectionRefusedError: ")
