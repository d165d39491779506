"""Layered configuration: built-in defaults < INI file < environment < explicit arguments.

lab-utils 0.5.x read its INI files with ``configparser`` and silently treated a
missing file as empty. This module reads the same files unchanged, but every
problem (missing file, section or required option, a value of the wrong type)
raises a :class:`ConfigError`, a :class:`configparser.Error` subclass whose
message names the file, the section, the option and the offending value.

Containers are configured without any file, through the environment:
``LABUTILS_<SECTION>_<OPTION>`` (upper case) sets an option, and
``LABUTILS_<SECTION>_<OPTION>_FILE`` names a file whose content is the value
(for secrets: Docker/compose secrets are files). ``<SECTION>`` is the INI
section name, except for the ``[Overall]`` section that several 0.5.x files
share: there it is the role of the file (``DATABASE``, ``SERVER``, ``CLIENT``).

Example::

    from lab_utils_common.config import Option, load_section

    values = load_section(
        "Overall",
        [Option("host", str, "localhost"), Option("port", port_number, 1507)],
        config_file="server.ini",
        env_section="SERVER",
        overrides={"port": 1600},
    )
    values["host"], values["port"]
"""

from __future__ import annotations

import configparser
import logging
import os
import string
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

__all__ = [
    "REQUIRED",
    "ConfigError",
    "ConfigFileError",
    "MissingSectionError",
    "MissingOptionError",
    "InvalidValueError",
    "Option",
    "load_section",
    "read_config_file",
    "read_secret_file",
    "parse_bool",
    "port_number",
    "remote_port",
    "positive_int",
    "positive_float",
    "non_negative_float",
    "integer_in",
    "byte_count",
    "seconds_in",
    "format_template",
    "MAX_INT",
    "MAX_SECONDS",
    "max_config_size",
    "max_secret_size",
    "log_level",
    "string_list",
    "env_name",
    "ENV_PREFIX",
]

ENV_PREFIX = "LABUTILS"

#: Largest integer any option takes: a C ``int`` (listen backlogs, sizes given to C code).
MAX_INT = 2 ** 31 - 1
#: Longest time any option takes, in seconds (~31 years): under ``threading.TIMEOUT_MAX``
#: and what ``select``/``settimeout`` accept, so a time never overflows where it is used.
MAX_SECONDS = 1e9

#: Default of the largest configuration file read (bytes); environment LABUTILS_CONFIG_MAX_SIZE.
DEFAULT_MAX_CONFIG_SIZE = 1024 * 1024
#: Default of the largest secret file read (bytes); environment LABUTILS_SECRET_MAX_SIZE.
DEFAULT_MAX_SECRET_SIZE = 64 * 1024

_logger = logging.getLogger(__name__)


class _Required:
    """Marker for an option that has no built-in default."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class ConfigError(configparser.Error):
    """Base class of every configuration problem; a :class:`configparser.Error`."""

    def __init__(self, message: str, *, file: Optional[str] = None, section: Optional[str] = None,
                 option: Optional[str] = None, value: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.section = section
        self.option = option
        self.value = value

    def __str__(self) -> str:
        return self.message


class ConfigFileError(ConfigError):
    """The configuration file does not exist, cannot be read or is not valid INI."""


class MissingSectionError(ConfigError):
    """The configuration file has no such section."""


class MissingOptionError(ConfigError):
    """An option without built-in default is set nowhere (file, environment, arguments)."""


class InvalidValueError(ConfigError):
    """An option has a value that its type refuses (non-integer port, unknown boolean...)."""


# --------------------------------------------------------------------------- value types
# Each converter takes the raw string and returns the typed value, or raises ValueError
# with a short reason; load_section wraps that into an InvalidValueError naming the place.

_TRUE = {"1", "true", "t", "y", "yes", "on"}
_FALSE = {"0", "false", "f", "n", "no", "off"}


def parse_bool(text: str) -> bool:
    """Parse a boolean strictly: ``1/true/t/y/yes/on`` or ``0/false/f/n/no/off``, any case."""
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use one of: {', '.join(sorted(_TRUE | _FALSE))})")


def _integer(text: Any) -> int:
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not an integer")
    try:
        return int(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def _number(text: Any) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def integer_in(minimum: int, maximum: int, unit: str = "") -> Callable[[str], int]:
    """A converter taking an integer from ``minimum`` to ``maximum`` (``unit`` names it in errors).

    Example: ``Option("max_backlog", integer_in(1, 65535), 128)``.
    """
    suffix = f" {unit}" if unit else ""

    def convert(text: str) -> int:
        value = _integer(text)
        if not minimum <= value <= maximum:
            raise ValueError(f"{value}{suffix} is outside the range {minimum}-{maximum}{suffix}")
        return value

    convert.__name__ = f"integer_in_{minimum}_{maximum}"
    return convert


def byte_count(minimum: int = 1, maximum: int = MAX_INT) -> Callable[[str], int]:
    """A converter taking a size in bytes from ``minimum`` to ``maximum``."""
    return integer_in(minimum, maximum, "bytes")


def seconds_in(minimum: float, maximum: float = MAX_SECONDS, *,
               minimum_allowed: bool = False) -> Callable[[str], float]:
    """A converter taking a finite time in seconds above ``minimum`` (or equal to it with
    ``minimum_allowed``) and at most ``maximum``; ``inf`` and ``nan`` are refused."""
    def convert(text: str) -> float:
        value = _number(text)
        low_ok = value >= minimum if minimum_allowed else value > minimum
        if not low_ok or value > maximum:
            low = f"{minimum:g} or more" if minimum_allowed else f"more than {minimum:g}"
            raise ValueError(f"{value:g} s is outside the range: {low}, at most {maximum:g} s")
        return value

    convert.__name__ = f"seconds_in_{minimum:g}_{maximum:g}"
    return convert


def port_number(text: str) -> int:
    """Parse a TCP port number to listen on, 0-65535 (0 lets the system choose)."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an integer port number") from None
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is outside the port range 0-65535")
    return value


def remote_port(text: str) -> int:
    """Parse a TCP port number to connect to, 1-65535."""
    value = port_number(text)
    if value == 0:
        raise ValueError("0 is not a port to connect to (use 1-65535)")
    return value


def positive_int(text: str) -> int:
    """Parse an integer from 1 to :data:`MAX_INT`."""
    value = _integer(text)
    if value <= 0:
        raise ValueError(f"{value} is not greater than zero")
    if value > MAX_INT:
        raise ValueError(f"{value} is larger than the maximum {MAX_INT}")
    return value


def positive_float(text: str) -> float:
    """Parse a finite number greater than zero, at most :data:`MAX_SECONDS` (options in seconds)."""
    value = _number(text)
    if not value > 0:
        raise ValueError(f"{value:g} is not greater than zero")
    if value > MAX_SECONDS:
        raise ValueError(f"{value:g} is larger than the maximum {MAX_SECONDS:g}")
    return value


def non_negative_float(text: str) -> float:
    """Parse a finite number from zero to :data:`MAX_SECONDS` (a wait where 0 means "at once")."""
    value = _number(text)
    if value < 0:
        raise ValueError(f"{value:g} is negative")
    if value > MAX_SECONDS:
        raise ValueError(f"{value:g} is larger than the maximum {MAX_SECONDS:g}")
    return value


def format_template(**samples: Any) -> Callable[[str], str]:
    """A converter taking a ``str.format`` template whose placeholders are among ``samples``.

    ``samples`` maps each allowed placeholder to a value of the type it gets, so format
    specifications are checked too (``{count:d}`` with ``count=0``). Attribute and index
    access (``{app.nope}``, ``{app[0]}``), positional fields and unknown names are refused
    with the list of allowed placeholders. Example::

        Option("subject_template", format_template(app="", level="", count=0), "{app}: {count}")
    """
    allowed = ", ".join("{" + name + "}" for name in samples)
    formatter = string.Formatter()

    def check(template: str) -> str:
        try:
            fields = list(formatter.parse(template))
        except ValueError as exc:
            raise ValueError(f"template {template!r} is not a valid format string: {exc}") from None
        for _, name, spec, conversion in fields:
            if name is None:
                continue
            if name not in samples:
                raise ValueError(f"template {template!r} uses unknown placeholder {{{name}}} "
                                 f"(allowed: {allowed})")
            if spec and ("{" in spec):
                raise ValueError(f"template {template!r}: nested fields in {{{name}:{spec}}} are "
                                 f"not allowed")
            try:
                value = formatter.convert_field(samples[name], conversion)
                format(value, spec)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"template {template!r}: {{{name}}} cannot be formatted: {exc}") from None
        return template

    return check


def log_level(text: str) -> int:
    """Parse a logging level name (``DEBUG`` ... ``CRITICAL``, ``SUCCESS``) or number."""
    raw = str(text).strip()
    if raw.isdigit():
        return int(raw)
    if raw.upper() == "SUCCESS":
        return 25
    level = logging.getLevelName(raw.upper())
    if isinstance(level, int):
        return level
    raise ValueError(f"{text!r} is not a logging level (DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL)")


def string_list(text: str) -> list[str]:
    """Parse a list given one item per line (the 0.5.x ``recipients`` style) or comma-separated."""
    if isinstance(text, (list, tuple)):
        return [str(item) for item in text]
    items = [part.strip() for line in str(text).splitlines() for part in line.split(",")]
    return [item for item in items if item]


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Option:
    """One configuration option: its name, a converter from text, and a default.

    ``default=REQUIRED`` makes the option mandatory. A converter is any callable
    from ``str`` to the value that raises ``ValueError`` on bad input (``int``,
    ``str``, :func:`parse_bool`, :func:`port_number`, ...). ``secret`` keeps the
    value out of logs and error messages.
    """

    name: str
    convert: Callable[[str], Any] = str
    default: Any = REQUIRED
    secret: bool = False
    help: str = field(default="", compare=False)


def env_name(section: str, option: str, prefix: str = ENV_PREFIX) -> str:
    """The environment variable that sets ``option`` of ``section``: ``LABUTILS_SECTION_OPTION``."""
    return f"{prefix}_{section}_{option}".upper().replace("-", "_").replace(".", "_")


def _limit_from_environment(variable: str, default: int) -> int:
    raw = os.environ.get(variable)
    if raw is None:
        return default
    try:
        return byte_count(1, MAX_INT)(raw)
    except ValueError as exc:
        raise InvalidValueError(f"environment variable {variable} has invalid value {raw!r}: {exc}",
                                option=variable, value=raw) from None


def max_config_size() -> int:
    """Largest configuration file read, bytes: LABUTILS_CONFIG_MAX_SIZE, default 1 MiB."""
    return _limit_from_environment(f"{ENV_PREFIX}_CONFIG_MAX_SIZE", DEFAULT_MAX_CONFIG_SIZE)


def max_secret_size() -> int:
    """Largest secret file read, bytes: LABUTILS_SECRET_MAX_SIZE, default 64 KiB."""
    return _limit_from_environment(f"{ENV_PREFIX}_SECRET_MAX_SIZE", DEFAULT_MAX_SECRET_SIZE)


def _read_text(path: str, limit: int, setting: str) -> str:
    """At most ``limit`` bytes of ``path`` as UTF-8 text; ValueError saying why not."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)  # never more: /dev/zero or a huge file must not fill memory
    if len(data) > limit:
        raise ValueError(f"it is larger than {limit} bytes ({setting})")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ValueError(f"it is not text: NUL byte at position {nul}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"it is not UTF-8 text: byte 0x{data[exc.start]:02x} at position {exc.start}") from None


def read_config_file(config_file: str) -> configparser.ConfigParser:
    """Read an INI file, raising :class:`ConfigFileError` if it is missing, malformed, larger
    than :func:`max_config_size` or not UTF-8 text."""
    path = os.path.abspath(os.path.expanduser(str(config_file)))
    parser = configparser.ConfigParser(interpolation=None)
    limit = max_config_size()
    try:
        text = _read_text(path, limit, f"{ENV_PREFIX}_CONFIG_MAX_SIZE")
        parser.read_string(text, source=path)
    except FileNotFoundError:
        raise ConfigFileError(f"configuration file {path!r} does not exist", file=path) from None
    except OSError as exc:
        raise ConfigFileError(f"configuration file {path!r} cannot be read: {exc}", file=path) from exc
    except configparser.Error as exc:
        raise ConfigFileError(f"configuration file {path!r} is not valid INI: {exc}", file=path) from exc
    except ValueError as exc:
        raise ConfigFileError(f"configuration file {path!r} cannot be read: {exc}", file=path) from None
    return parser


def read_secret_file(path: str, *, section: str, option: str, variable: Optional[str] = None) -> str:
    """The content of a file holding a secret, without its final line break.

    Raises :class:`ConfigFileError` naming the file and ``option`` of ``section``
    (and the environment ``variable`` that named the file, if any), never the content;
    also for a file larger than :func:`max_secret_size` or not UTF-8 text.
    """
    full = os.path.abspath(os.path.expanduser(path))
    try:
        return _read_text(full, max_secret_size(), f"{ENV_PREFIX}_SECRET_MAX_SIZE").rstrip("\r\n")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        message = (f"{variable}={path!r}: cannot read the file for option {option!r} of section "
                   f"[{section}]: {reason}" if variable else
                   f"option {option!r} of section [{section}]: cannot read {full!r}: {reason}")
        raise ConfigFileError(message, file=full, section=section, option=option) from None


def load_section(
    section: str,
    options: Iterable[Option],
    config_file: Optional[str] = None,
    *,
    env_section: Optional[str] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    environ: Optional[Mapping[str, str]] = None,
    parser: Optional[configparser.ConfigParser] = None,
) -> dict[str, Any]:
    """Resolve every option of one section: defaults < INI file < environment < overrides.

    ``config_file`` (or an already read ``parser``) is optional; when given, the
    section must be in it. ``env_section`` replaces the section name in
    environment variable names (``Overall`` -> ``DATABASE``). ``overrides``
    entries whose value is ``None`` are ignored, so constructor arguments can be
    passed through as they are. Returns a dict from option name to typed value.
    """
    environ = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    env_key = env_section or section
    file_label = None
    if parser is None and config_file is not None:
        parser = read_config_file(config_file)
    if parser is not None:
        file_label = config_file or "<configuration>"
        file_label = os.path.abspath(os.path.expanduser(file_label)) if config_file else file_label
        if not parser.has_section(section):
            raise MissingSectionError(
                f"configuration file {file_label!r} has no section [{section}]",
                file=file_label, section=section)

    values: dict[str, Any] = {}
    for opt in options:
        place = f"option {opt.name!r} of section [{section}]"
        raw: Any = REQUIRED
        origin = "built-in default"
        if parser is not None and parser.has_option(section, opt.name):
            raw = parser.get(section, opt.name)
            origin = f"configuration file {file_label!r}"
        variable = env_name(env_key, opt.name)
        if variable in environ:
            raw = environ[variable]
            origin = f"environment variable {variable}"
        elif variable + "_FILE" in environ:
            raw = read_secret_file(environ[variable + "_FILE"], section=section, option=opt.name,
                                   variable=variable + "_FILE")
            origin = f"file named by {variable}_FILE"
        if opt.name in overrides:
            raw = overrides[opt.name]
            origin = "explicit argument"
        if raw is REQUIRED:
            if opt.default is REQUIRED:
                where = f" in configuration file {file_label!r}" if file_label else ""
                raise MissingOptionError(
                    f"{place} is required but not set{where}; set it there or in the "
                    f"environment as {variable} (or {variable}_FILE)",
                    file=file_label, section=section, option=opt.name)
            values[opt.name] = opt.default
            continue
        if origin == "explicit argument" and not isinstance(raw, str):
            # Typed constructor arguments (port=1600, active=True) are checked as text.
            raw_text = raw if isinstance(raw, (bool, list, tuple)) else str(raw)
        else:
            raw_text = raw
        try:
            values[opt.name] = opt.convert(raw_text)
        except (ValueError, TypeError) as exc:
            shown = "<secret>" if opt.secret else repr(raw)
            reason = "invalid value" if opt.secret else str(exc)
            raise InvalidValueError(
                f"{place} from {origin} has invalid value {shown}: {reason}",
                file=file_label, section=section, option=opt.name,
                value=None if opt.secret else raw) from None
        _logger.debug("%s = %s (from %s)", place, "<secret>" if opt.secret else repr(values[opt.name]), origin)
    return values
