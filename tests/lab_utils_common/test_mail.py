"""lab_utils_common.mail against a real SMTP server (aiosmtpd) with TLS from a trustme CA."""

from __future__ import annotations

import smtplib
import ssl

import pytest

from lab_utils_common.config import ConfigFileError, InvalidValueError, MissingOptionError
from lab_utils_common.mail import MailSettings, build_message, send_email


def settings_for(server, **changes) -> MailSettings:
    values = dict(host=server.host, port=server.port, security=server.security,
                  username=server.username if server.auth else None,
                  password=server.password if server.auth else None,
                  sender="lab@example.org", recipients=("alice@example.org", "bob@example.org"),
                  subject="lab alarm", ca_file=server.ca_file)
    values.update(changes)
    return MailSettings(**values)


def test_starttls_with_login_delivers_one_message(smtp_server):
    settings = settings_for(smtp_server)
    send_email(settings, build_message(settings, "pump 3", "pressure too high\nsecond line"))
    [message] = smtp_server.wait_for(1)
    assert message["Subject"] == "pump 3"
    assert message["From"] == "lab@example.org"
    assert message["To"] == "alice@example.org, bob@example.org"
    assert message.get_content() == "pressure too high\nsecond line\n"
    assert smtp_server.envelopes == [("lab@example.org", ["alice@example.org", "bob@example.org"])]


def test_implicit_tls_delivers(smtp_server_factory):
    server = smtp_server_factory("tls")
    settings = settings_for(server)
    send_email(settings, build_message(settings, "implicit", "over TLS from the first byte"))
    assert server.wait_for(1)[0]["Subject"] == "implicit"


def test_plain_relay_without_auth_delivers(smtp_server_factory):
    server = smtp_server_factory("none", auth=False)
    settings = settings_for(server)
    send_email(settings, build_message(settings, "plain", "local relay"))
    assert server.wait_for(1)[0]["Subject"] == "plain"


def test_certificate_from_another_ca_is_refused(smtp_server_factory):
    server = smtp_server_factory("starttls", trusted=False)
    settings = settings_for(server)
    with pytest.raises(ssl.SSLCertVerificationError):
        send_email(settings, build_message(settings, "never", "sent"))
    assert server.messages == []


def test_system_cas_do_not_trust_the_test_ca(smtp_server_factory):
    server = smtp_server_factory("tls")
    settings = settings_for(server, ca_file=None)
    with pytest.raises(ssl.SSLCertVerificationError):
        send_email(settings, build_message(settings, "never", "sent"))


def test_verify_off_accepts_any_certificate(smtp_server_factory):
    server = smtp_server_factory("starttls", trusted=False)
    settings = settings_for(server, verify=False)
    send_email(settings, build_message(settings, "unverified", "body"))
    assert server.wait_for(1)[0]["Subject"] == "unverified"


def test_wrong_password_raises_authentication_error(smtp_server):
    settings = settings_for(smtp_server, password="wrong")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        send_email(settings, build_message(settings, "never", "sent"))


def test_starttls_against_server_without_it_says_what_to_do(smtp_server_factory):
    server = smtp_server_factory("none", auth=False)
    settings = settings_for(server, security="starttls")
    with pytest.raises(smtplib.SMTPNotSupportedError, match="does not offer STARTTLS"):
        send_email(settings, build_message(settings, "never", "sent"))


def test_server_down_raises_oserror(smtp_server):
    smtp_server.stop()
    settings = settings_for(smtp_server, timeout=2.0)
    with pytest.raises(OSError):
        send_email(settings, build_message(settings, "never", "sent"))


def test_subject_line_breaks_cannot_inject_headers(smtp_server):
    settings = settings_for(smtp_server)
    send_email(settings, build_message(settings, "alarm\r\nBcc: eve@example.org", "body"))
    [message] = smtp_server.wait_for(1)
    assert message["Bcc"] is None
    assert message["Subject"] == "alarm Bcc: eve@example.org"


def test_password_is_not_in_repr():
    settings = MailSettings(host="h", sender="s@x", recipients=("r@x",), subject="s",
                            username="u", password="hunter2")
    assert "hunter2" not in repr(settings)


def test_credentials_over_plain_connection_are_refused():
    with pytest.raises(ValueError, match="unencrypted"):
        MailSettings(host="h", sender="s@x", recipients=("r@x",), subject="s", security="none",
                     username="u", password="p")


# --------------------------------------------------------------------------- from_config

LEGACY_SECTION = """\
[MailHandler]
active = 1
credentials_file = {credentials}
log_level = SUCCESS
mail_host = 127.0.0.1
port = {port}
sender = epic-em@example.org
subject = Logging from lab_utils module
recipients =
    alice@example.org
    bob@example.org
"""


@pytest.fixture
def credentials_file(tmp_path, smtp_server):
    path = tmp_path / "smtpcredentials"
    path.write_text(f"{smtp_server.username}\n{smtp_server.password}\n")
    return path


def test_from_legacy_config_and_send(tmp_path, smtp_server, credentials_file):
    ini = tmp_path / "logging.ini"
    ini.write_text(LEGACY_SECTION.format(credentials=credentials_file, port=smtp_server.port)
                   + f"ca_file = {smtp_server.ca_file}\n")
    settings = MailSettings.from_config(str(ini), environ={})
    assert settings.recipients == ("alice@example.org", "bob@example.org")
    assert (settings.username, settings.password) == (smtp_server.username, smtp_server.password)
    assert settings.security == "starttls" and settings.verify is True
    send_email(settings, build_message(settings, settings.subject, "hello"))
    assert smtp_server.wait_for(1)[0]["Subject"] == "Logging from lab_utils module"


def test_from_environment_only(tmp_path, smtp_server, credentials_file):
    password_file = tmp_path / "password"
    password_file.write_text(smtp_server.password + "\n")
    environ = {
        "LABUTILS_MAILHANDLER_MAIL_HOST": "127.0.0.1",
        "LABUTILS_MAILHANDLER_PORT": str(smtp_server.port),
        "LABUTILS_MAILHANDLER_SECURITY": "starttls",
        "LABUTILS_MAILHANDLER_SENDER": "lab@example.org",
        "LABUTILS_MAILHANDLER_RECIPIENTS": "alice@example.org, bob@example.org",
        "LABUTILS_MAILHANDLER_USERNAME": smtp_server.username,
        "LABUTILS_MAILHANDLER_PASSWORD_FILE": str(password_file),
        "LABUTILS_MAILHANDLER_CA_FILE": smtp_server.ca_file,
    }
    settings = MailSettings.from_config(environ=environ)
    assert settings.password == smtp_server.password
    send_email(settings, build_message(settings, "from env", "body"))
    assert smtp_server.wait_for(1)[0]["To"] == "alice@example.org, bob@example.org"


def test_implicit_tls_defaults_to_port_465():
    settings = MailSettings.from_config(environ={}, host="mail.example.org", security="tls",
                                        sender="a@b", recipients="c@d")
    assert settings.port == 465


def test_overrides_win_over_file(tmp_path, credentials_file):
    ini = tmp_path / "logging.ini"
    ini.write_text(LEGACY_SECTION.format(credentials=credentials_file, port=25))
    settings = MailSettings.from_config(str(ini), environ={"LABUTILS_MAILHANDLER_PORT": "587"},
                                        host="override.example.org", timeout=3)
    assert (settings.host, settings.port, settings.timeout) == ("override.example.org", 587, 3.0)


def test_missing_credentials_file_names_option_and_path(tmp_path):
    ini = tmp_path / "logging.ini"
    ini.write_text(LEGACY_SECTION.format(credentials=tmp_path / "nope", port=25))
    with pytest.raises(ConfigFileError, match="credentials_file.*nope"):
        MailSettings.from_config(str(ini), environ={})


def test_one_line_credentials_file_is_refused_without_showing_it(tmp_path):
    creds = tmp_path / "creds"
    creds.write_text("only-a-secret-line\n")
    ini = tmp_path / "logging.ini"
    ini.write_text(LEGACY_SECTION.format(credentials=creds, port=25))
    with pytest.raises(InvalidValueError, match="line 2") as caught:
        MailSettings.from_config(str(ini), environ={})
    assert "only-a-secret-line" not in str(caught.value)


def test_unknown_security_mode_names_value(tmp_path, credentials_file):
    ini = tmp_path / "logging.ini"
    ini.write_text(LEGACY_SECTION.format(credentials=credentials_file, port=25) + "security = ssl\n")
    with pytest.raises(InvalidValueError, match=r"'security'.*\[MailHandler\].*'ssl'"):
        MailSettings.from_config(str(ini), environ={})


def test_missing_mail_host_names_env_variable():
    with pytest.raises(MissingOptionError, match="LABUTILS_MAILHANDLER_MAIL_HOST"):
        MailSettings.from_config(environ={})


INJECTED = "=?utf-8?q?=0D=0AReply-To:_evil@example.net=0D=0AContent-Type:_text/html?= pump"


def test_an_encoded_word_is_never_decoded_into_a_header(smtp_server):
    settings = settings_for(smtp_server)
    send_email(settings, build_message(settings, INJECTED, "body"))
    [message] = smtp_server.wait_for(1)
    assert message["Reply-To"] is None
    assert message.get_content_type() == "text/plain"
    # Shown as sent: the encoded word is text (a zero-width space keeps it from being one).
    assert message["Subject"].replace("\u200b", "") == INJECTED


def test_control_and_bidi_characters_are_shown_escaped(smtp_server):
    settings = settings_for(smtp_server)
    send_email(settings, build_message(settings, "valve\x00 \x1b[31mred \u202eevil \u2066x",
                                       "line\x07 one\nreversed \u202e here\tand \u2066isolate"))
    [message] = smtp_server.wait_for(1)
    assert message["Subject"] == "valve\\x00 \\x1b[31mred \\u202eevil \\u2066x"
    assert message.get_content() == "line\\x07 one\nreversed \\u202e here\tand \\u2066isolate\n"


def test_a_server_that_never_finishes_its_greeting_ends_at_the_deadline(slow_greeter):
    import threading

    settings = MailSettings(host=slow_greeter.host, port=slow_greeter.port, security="none",
                            sender="lab@example.org", recipients=("a@example.org",),
                            subject="s", timeout=5.0, deadline=1.0)
    outcome: list = []

    def send() -> None:
        try:
            send_email(settings, build_message(settings, "slow", "body"))
        except Exception as exc:
            outcome.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(30)  # before: blocked for ever (each byte came within the per-read timeout)
    assert not sender.is_alive()
    [error] = outcome
    assert isinstance(error, TimeoutError) and "deadline = 1.0 s" in str(error)


def test_a_message_over_the_servers_size_is_refused_before_sending(smtp_server_factory):
    from lab_utils_common.mail import MessageTooLargeError, is_permanent

    server = smtp_server_factory("none", auth=False)
    settings = settings_for(server)
    with pytest.raises(MessageTooLargeError) as refused:
        send_email(settings, build_message(settings, "big", "x" * 50_000), max_message_bytes=20_000)
    assert is_permanent(refused.value) and "max_message_bytes = 20000" in str(refused.value)
    assert server.messages == []
