"""configure_logging's mail and Slack queues are bounded; drops are counted exactly, said once."""

from __future__ import annotations

import re

from tests.fixtures.ports import wait_until

from lab_utils_common.custom_logging import configure, configure_logging, getLogger, unconfigure_logging


def test_a_mail_server_that_never_answers_bounds_the_queue_and_counts_exactly(
        tmp_path, slow_greeter, monkeypatch, capsys):
    monkeypatch.setattr(configure, "_SLOW_HANDLER_EXIT_WAIT", 0.5)
    environ = {"LABUTILS_CONSOLELOGGER_ACTIVE": "0",
               "LABUTILS_MAILHANDLER_ACTIVE": "1", "LABUTILS_MAILHANDLER_MAIL_HOST": "127.0.0.1",
               "LABUTILS_MAILHANDLER_PORT": str(slow_greeter.port),
               "LABUTILS_MAILHANDLER_SECURITY": "none", "LABUTILS_MAILHANDLER_QUEUE_SIZE": "10",
               "LABUTILS_MAILHANDLER_SENDER": "lab@example.org",
               "LABUTILS_MAILHANDLER_RECIPIENTS": "alice@example.org"}
    configure_logging(environ=environ, logger_name="pump")
    forwarder = next(h for h in configure._active["listeners"][0].handlers
                     if isinstance(h, configure._Forwarder))
    try:
        for i in range(200):
            getLogger().error("alarm %d", i)
        # One record is stuck in the handler (the greeting never ends); the rest waits in a
        # queue of 10 (plus a drop report when there was room) or was dropped and counted.
        def waiting() -> int:
            return sum(1 for r in list(forwarder.queue.queue) if str(r.msg).startswith("alarm "))

        wait_until(lambda: slow_greeter.connections >= 1 and forwarder.dropped + waiting() == 199,
                   20, lambda: f"dropped {forwarder.dropped}, waiting {waiting()}")
        assert waiting() <= 10  # before: 199 in an unbounded queue
    finally:
        unconfigure_logging()
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if "given up at exit" in line]
    given_up, dropped = map(int, re.search(r": (\d+) queued record\(s\) given up .*, (\d+) more dropped",
                                           line).groups())
    assert given_up + dropped == 199  # each record counted once, said once
