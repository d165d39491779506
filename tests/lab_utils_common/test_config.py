"""lab_utils_common.config: precedence, secret files, and every bad-input case."""

from __future__ import annotations

import configparser
import logging
import re

import pytest

from lab_utils_common.config import (
    ConfigError,
    ConfigFileError,
    InvalidValueError,
    MissingOptionError,
    MissingSectionError,
    Option,
    byte_count,
    env_name,
    format_template,
    integer_in,
    load_section,
    log_level,
    non_negative_float,
    parse_bool,
    port_number,
    positive_float,
    positive_int,
    read_config_file,
    read_secret_file,
    remote_port,
    seconds_in,
    string_list,
)

SERVER_OPTIONS = [Option("host", str, "localhost"), Option("port", port_number, 1507)]


@pytest.fixture
def server_ini(tmp_path):
    path = tmp_path / "server.ini"
    path.write_text("[Overall]\nhost = lab-pc\nport = 1600\n")
    return str(path)


def test_defaults_alone():
    assert load_section("Overall", SERVER_OPTIONS, environ={}) == {"host": "localhost", "port": 1507}


def test_file_beats_defaults(server_ini):
    assert load_section("Overall", SERVER_OPTIONS, server_ini, environ={}) == {"host": "lab-pc", "port": 1600}


def test_environment_beats_file(server_ini):
    environ = {"LABUTILS_SERVER_PORT": "1700"}
    values = load_section("Overall", SERVER_OPTIONS, server_ini, env_section="SERVER", environ=environ)
    assert values == {"host": "lab-pc", "port": 1700}


def test_environment_uses_the_section_name_without_env_section(tmp_path):
    ini = tmp_path / "logging.ini"
    ini.write_text("[AlarmLogger]\nhost = localhost\n")
    values = load_section("AlarmLogger", [Option("host", str)], str(ini),
                          environ={"LABUTILS_ALARMLOGGER_HOST": "log-relay"})
    assert values == {"host": "log-relay"}


def test_explicit_arguments_beat_environment(server_ini):
    environ = {"LABUTILS_SERVER_PORT": "1700", "LABUTILS_SERVER_HOST": "env-host"}
    values = load_section("Overall", SERVER_OPTIONS, server_ini, env_section="SERVER",
                          environ=environ, overrides={"port": 1800, "host": None})
    assert values == {"host": "env-host", "port": 1800}  # None means "not given"


def test_file_variant_reads_a_secret(tmp_path):
    secret = tmp_path / "db_password"
    secret.write_text("s3cret with spaces\n")
    values = load_section("Overall", [Option("password", str, secret=True)], env_section="DATABASE",
                          environ={"LABUTILS_DATABASE_PASSWORD_FILE": str(secret)})
    assert values == {"password": "s3cret with spaces"}


def test_plain_variable_beats_file_variant(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("from-file")
    environ = {"LABUTILS_DATABASE_PASSWORD": "from-env", "LABUTILS_DATABASE_PASSWORD_FILE": str(secret)}
    values = load_section("Overall", [Option("password", str)], env_section="DATABASE", environ=environ)
    assert values == {"password": "from-env"}


def test_env_name():
    assert env_name("MailHandler", "mail_host") == "LABUTILS_MAILHANDLER_MAIL_HOST"


# --------------------------------------------------------------------------- bad input


def test_errors_are_configparser_errors():
    for cls in (ConfigFileError, MissingSectionError, MissingOptionError, InvalidValueError):
        assert issubclass(cls, ConfigError) and issubclass(cls, configparser.Error)


def test_missing_file_names_it(tmp_path):
    missing = tmp_path / "nowhere" / "server.ini"
    with pytest.raises(ConfigFileError) as caught:
        load_section("Overall", SERVER_OPTIONS, str(missing), environ={})
    assert str(missing) in str(caught.value) and "does not exist" in str(caught.value)
    assert caught.value.file == str(missing)


def test_malformed_file_names_it(tmp_path):
    path = tmp_path / "broken.ini"
    path.write_text("host = no section header\n")
    with pytest.raises(ConfigFileError, match=r"broken\.ini.*not valid INI"):
        read_config_file(str(path))


def test_missing_section_names_file_and_section(tmp_path):
    path = tmp_path / "server.ini"
    path.write_text("[Server]\nport = 1\n")
    with pytest.raises(MissingSectionError) as caught:
        load_section("Overall", SERVER_OPTIONS, str(path), environ={})
    assert str(path) in str(caught.value) and "[Overall]" in str(caught.value)
    assert (caught.value.file, caught.value.section) == (str(path), "Overall")


def test_missing_required_option_names_file_section_option_and_variable(server_ini):
    with pytest.raises(MissingOptionError) as caught:
        load_section("Overall", [Option("database", str)], server_ini, env_section="DATABASE",
                     environ={})
    message = str(caught.value)
    for part in (server_ini, "[Overall]", "'database'", "LABUTILS_DATABASE_DATABASE"):
        assert part in message
    assert caught.value.option == "database"


def test_non_integer_port_names_file_section_option_value(tmp_path):
    path = tmp_path / "server.ini"
    path.write_text("[Overall]\nport = 15o7\n")
    with pytest.raises(InvalidValueError) as caught:
        load_section("Overall", SERVER_OPTIONS, str(path), environ={})
    message = str(caught.value)
    for part in (str(path), "[Overall]", "'port'", "'15o7'"):
        assert part in message
    assert (caught.value.option, caught.value.value) == ("port", "15o7")


def test_port_out_of_range_from_environment_names_the_variable():
    with pytest.raises(InvalidValueError, match=r"LABUTILS_SERVER_PORT.*'70000'.*0-65535"):
        load_section("Overall", SERVER_OPTIONS, env_section="SERVER",
                     environ={"LABUTILS_SERVER_PORT": "70000"})


def test_unknown_boolean_names_file_section_option_value(tmp_path):
    path = tmp_path / "logging.ini"
    path.write_text("[ConsoleLogger]\nactive = sometimes\n")
    with pytest.raises(InvalidValueError) as caught:
        load_section("ConsoleLogger", [Option("active", parse_bool, True)], str(path), environ={})
    message = str(caught.value)
    for part in (str(path), "[ConsoleLogger]", "'active'", "'sometimes'"):
        assert part in message


def test_secret_value_is_not_shown(tmp_path):
    path = tmp_path / "x.ini"
    path.write_text("[S]\npin = hunter2\n")
    with pytest.raises(InvalidValueError) as caught:
        load_section("S", [Option("pin", positive_int, secret=True)], str(path), environ={})
    assert "hunter2" not in str(caught.value) and "'pin'" in str(caught.value)


def test_unreadable_secret_file_names_variable_and_path(tmp_path):
    with pytest.raises(ConfigFileError, match=r"LABUTILS_DATABASE_PASSWORD_FILE=.*nope.*'password'"):
        load_section("Overall", [Option("password", str)], env_section="DATABASE",
                     environ={"LABUTILS_DATABASE_PASSWORD_FILE": str(tmp_path / "nope")})


def test_read_secret_file_for_an_option_of_a_file(tmp_path):
    secret = tmp_path / "url"
    secret.write_text("https://hooks.example/T/B/x \n")
    assert read_secret_file(str(secret), section="SlackLogger", option="webhook_url_file") \
        == "https://hooks.example/T/B/x "  # only the line break goes
    with pytest.raises(ConfigFileError, match=r"^option 'webhook_url_file' of section \[SlackLogger\]: "
                                              r"cannot read '.*/nope': No such file") as caught:
        read_secret_file(str(tmp_path / "nope"), section="SlackLogger", option="webhook_url_file")
    assert caught.value.option == "webhook_url_file" and caught.value.file == str(tmp_path / "nope")


def test_bad_explicit_argument_names_it():
    with pytest.raises(InvalidValueError, match=r"'port'.*explicit argument.*'abc'"):
        load_section("Overall", SERVER_OPTIONS, environ={}, overrides={"port": "abc"})


# --------------------------------------------------------------------------- converters


@pytest.mark.parametrize("text,value", [("1", True), ("Yes", True), ("on", True), ("t", True),
                                        ("0", False), ("NO", False), ("off", False), ("f", False)])
def test_parse_bool(text, value):
    assert parse_bool(text) is value


@pytest.mark.parametrize("convert,text", [(parse_bool, "2"), (port_number, "-1"),
                                          (positive_int, "0"), (positive_float, "nan"),
                                          (non_negative_float, "-0.5"), (non_negative_float, "nan"),
                                          (non_negative_float, "soon"), (log_level, "LOUD")])
def test_converters_refuse(convert, text):
    with pytest.raises(ValueError, match=re.escape(text)):
        convert(text)


def test_non_negative_float_takes_zero():
    assert [non_negative_float(t) for t in ("0", " 2.5 ", "1e3")] == [0.0, 2.5, 1000.0]


def test_log_level_names():
    assert [log_level(t) for t in ("debug", "SUCCESS", "Warning", "40")] == [
        logging.DEBUG, 25, logging.WARNING, 40]


def test_string_list_one_per_line_or_commas():
    assert string_list("\n    a@x\n    b@x, c@x\n") == ["a@x", "b@x", "c@x"]


# --------------------------------------------------------------------------- ranges and hostile input


@pytest.mark.parametrize("convert,text,reason", [
    (positive_int, "99999999999", "larger than the maximum 2147483647"),
    (positive_int, "True", "not an integer"),
    (positive_float, "inf", "not a finite number"),
    (positive_float, "1e300", "larger than the maximum"),
    (non_negative_float, "inf", "not a finite number"),
    (non_negative_float, "-inf", "not a finite number"),
    (remote_port, "0", "not a port to connect to"),
    (remote_port, "65536", "outside the port range"),
])
def test_ranges_refuse_values_that_would_overflow_or_never_end(convert, text, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        convert(text)


def test_integer_in_and_byte_count_name_the_range():
    assert integer_in(1, 65535)(" 128 ") == 128
    with pytest.raises(ValueError, match="99999999999 is outside the range 1-65535"):
        integer_in(1, 65535)("99999999999")
    assert byte_count(1024, 2048)("2048") == 2048
    with pytest.raises(ValueError, match="1023 bytes is outside the range 1024-2048 bytes"):
        byte_count(1024, 2048)("1023")


def test_seconds_in_is_finite_and_bounded():
    assert seconds_in(0)("0.5") == 0.5
    assert seconds_in(0, minimum_allowed=True)("0") == 0.0
    for text in ("0", "inf", "nan", "86401"):
        with pytest.raises(ValueError, match="s|finite"):
            seconds_in(0, 86400)(text)


def test_a_range_error_names_file_section_option_and_value(tmp_path):
    ini = tmp_path / "server.ini"
    ini.write_text("[Overall]\nmax_backlog = 99999999999\n")
    with pytest.raises(InvalidValueError) as caught:
        load_section("Overall", [Option("max_backlog", positive_int, 128)], str(ini), environ={})
    message = str(caught.value)
    assert str(ini) in message and "[Overall]" in message and "'max_backlog'" in message
    assert "'99999999999'" in message
    assert (caught.value.file, caught.value.section, caught.value.option) == (
        str(ini), "Overall", "max_backlog")


SUBJECT = format_template(subject="", level="", app="", count=0, first_message="", more="", host="")


@pytest.mark.parametrize("template", ["{subject} [{level}] {app}: {first_message}{more}",
                                      "{count:d} from {app!r:>10} on {host}", "no fields {{at all}}"])
def test_format_template_takes_allowed_placeholders(template):
    assert SUBJECT(template) == template


@pytest.mark.parametrize("template,reason", [
    ("{app.nope}", "unknown placeholder {app.nope}"),
    ("{app[0]}", "unknown placeholder {app[0]}"),
    ("{0}", "unknown placeholder {0}"),
    ("{}", "unknown placeholder {}"),
    ("{nope}", "unknown placeholder {nope} (allowed: {subject}, {level}"),
    ("{count:q}", "{count} cannot be formatted"),
    ("{app!x}", "{app} cannot be formatted"),
    ("{app:{count}}", "nested fields"),
    ("{app", "not a valid format string"),
])
def test_format_template_refuses_what_would_fail_later(template, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        SUBJECT(template)


def test_template_error_reaches_the_caller_as_a_config_error(tmp_path):
    ini = tmp_path / "relay.ini"
    ini.write_text("[Relay]\nsubject_template = {app.nope}\n")
    with pytest.raises(InvalidValueError, match=r"'subject_template' of section \[Relay\].*'\{app.nope\}'"):
        load_section("Relay", [Option("subject_template", SUBJECT, "{app}")], str(ini), environ={})


def test_config_file_from_dev_zero_is_refused_naming_the_limit():
    with pytest.raises(ConfigFileError, match=r"'/dev/zero'.*larger than 1048576 bytes "
                                              r"\(LABUTILS_CONFIG_MAX_SIZE\)"):
        read_config_file("/dev/zero")


def test_config_file_size_limit_is_a_setting(tmp_path, monkeypatch):
    ini = tmp_path / "big.ini"
    ini.write_text("[Overall]\n" + "# comment\n" * 200)
    assert read_config_file(str(ini)).has_section("Overall")
    monkeypatch.setenv("LABUTILS_CONFIG_MAX_SIZE", "1000")
    with pytest.raises(ConfigFileError, match=r"larger than 1000 bytes \(LABUTILS_CONFIG_MAX_SIZE\)"):
        read_config_file(str(ini))
    monkeypatch.setenv("LABUTILS_CONFIG_MAX_SIZE", "lots")
    with pytest.raises(InvalidValueError, match="LABUTILS_CONFIG_MAX_SIZE.*'lots'"):
        read_config_file(str(ini))


@pytest.mark.parametrize("content,reason", [(b"[Overall]\nport = 1\x00\n", "NUL byte at position 18"),
                                            (b"[Overall]\nhost = \xff\n", "not UTF-8 text: byte 0xff")])
def test_config_file_that_is_not_text_is_refused(tmp_path, content, reason):
    ini = tmp_path / "binary.ini"
    ini.write_bytes(content)
    with pytest.raises(ConfigFileError, match=re.escape(reason)):
        read_config_file(str(ini))


def test_secret_file_from_dev_zero_is_refused_without_reading_it_all():
    with pytest.raises(ConfigFileError, match=r"token_file.*larger than 65536 bytes "
                                              r"\(LABUTILS_SECRET_MAX_SIZE\)"):
        read_secret_file("/dev/zero", section="Overall", option="token_file")
