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
    env_name,
    load_section,
    log_level,
    non_negative_float,
    parse_bool,
    port_number,
    positive_float,
    positive_int,
    read_config_file,
    read_secret_file,
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
