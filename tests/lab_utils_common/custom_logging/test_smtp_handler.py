"""TlsSMTPHandler against a real aiosmtpd server with TLS certificates from a trustme CA."""

from __future__ import annotations

import ssl

import pytest

from tests.fixtures.tcp_peers import KeepsHandlerErrors

from lab_utils_common.custom_logging import TlsSMTPHandler


class RecordingTlsSMTPHandler(KeepsHandlerErrors, TlsSMTPHandler):
    """Keeps what handleError was given, as the application would see on stderr."""


@pytest.fixture
def logger(isolated_logger):
    return isolated_logger("mail-test")


def handler_for(server, cls=TlsSMTPHandler, **options) -> TlsSMTPHandler:
    return cls((server.host, server.port), "lab@example.org", ["alice@example.org"],
               "lab alarm", credentials=(server.username, server.password),
               security=server.security, ca_file=server.ca_file, **options)


def test_starttls_one_message_per_record(smtp_server, logger):
    logger.addHandler(handler_for(smtp_server))
    logger.error("pressure too high")
    logger.critical("pump stopped")
    first, second = smtp_server.wait_for(2)
    assert [m["Subject"] for m in (first, second)] == ["lab alarm", "lab alarm"]
    assert first.get_content().strip() == "pressure too high"
    assert second.get_content().strip() == "pump stopped"
    assert first["To"] == "alice@example.org"


def test_implicit_tls(smtp_server_factory, logger):
    server = smtp_server_factory("tls")
    logger.addHandler(handler_for(server))
    logger.error("over implicit TLS")
    assert server.wait_for(1)[0].get_content().strip() == "over implicit TLS"


def test_without_credentials_on_a_plain_relay(smtp_server_factory, logger):
    server = smtp_server_factory("none", auth=False)
    logger.addHandler(TlsSMTPHandler((server.host, server.port), "lab@example.org",
                                     "alice@example.org", "relay", security="none"))
    logger.error("no login needed")
    [message] = server.wait_for(1)
    assert (message["Subject"], message["To"]) == ("relay", "alice@example.org")


def test_credentials_from_a_file(smtp_server, tmp_path, logger):
    credentials = tmp_path / "smtpcredentials"
    credentials.write_text(f"{smtp_server.username}\n{smtp_server.password}\n")
    handler = TlsSMTPHandler((smtp_server.host, smtp_server.port), "lab@example.org",
                             ["alice@example.org"], "from file", credentials_file=str(credentials),
                             ca_file=smtp_server.ca_file)
    logger.addHandler(handler)
    logger.error("authenticated with the file's credentials")
    assert smtp_server.wait_for(1)[0]["Subject"] == "from file"


def test_certificate_that_does_not_verify_goes_to_handle_error(smtp_server_factory, logger):
    server = smtp_server_factory("starttls", trusted=False)
    handler = handler_for(server, cls=RecordingTlsSMTPHandler)
    logger.addHandler(handler)
    logger.error("must not be sent to an unverified server")  # returns: the app keeps running
    logger.error("nor this one")
    assert len(handler.errors) == 2
    assert all(isinstance(error, ssl.SSLCertVerificationError) for error in handler.errors)
    assert server.messages == []


def test_failed_send_is_reported_on_stderr_and_app_continues(smtp_server_factory, logger, capsys):
    server = smtp_server_factory("starttls", trusted=False)
    logger.addHandler(handler_for(server))
    logger.error("unverified")
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "CERTIFICATE_VERIFY_FAILED" in err
    assert server.messages == []


def test_server_down_goes_to_handle_error(smtp_server, logger):
    handler = handler_for(smtp_server, cls=RecordingTlsSMTPHandler)
    logger.addHandler(handler)
    smtp_server.stop()
    logger.error("nobody listens")
    assert [type(e) for e in handler.errors] == [ConnectionRefusedError]
    smtp_server.start()
    logger.error("back again")
    assert smtp_server.wait_for(1)[0].get_content().strip() == "back again"


def test_repr_does_not_show_the_password(smtp_server):
    handler = handler_for(smtp_server)
    assert smtp_server.password not in repr(handler)
    assert smtp_server.password not in repr(handler.settings)
