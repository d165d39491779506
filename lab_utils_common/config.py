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
    "positive_int",
    "positive_float",
    "non_negative_float",
    "log_level",
    "string_list",
    "env_name",
    "ENV_PREFIX",
]

ENV_PREFIX = "LABUTILS"

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


def port_number(text: str) -> int:
    """Parse a TCP port number, 0-65535 (0 lets the system choose)."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an integer port number") from None
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is outside the port range 0-65535")
    return value


def positive_int(text: str) -> int:
    """Parse an integer greater than zero."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise ValueError(f"{value} is not greater than zero")
    return value


def positive_float(text: str) -> float:
    """Parse a number greater than zero."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not value > 0:
        raise ValueError(f"{value} is not greater than zero")
    return value


def non_negative_float(text: str) -> float:
    """Parse a number zero or greater (a wait where 0 means "at once")."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not value >= 0:  # also refuses nan
        raise ValueError(f"{value} is negative" if value < 0 else f"{value} is not a number >= 0")
    return value


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


def read_config_file(config_file: str) -> configparser.ConfigParser:
    """Read an INI file, raising :class:`ConfigFileError` if it is missing or malformed."""
    path = os.path.abspath(os.path.expanduser(str(config_file)))
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle, source=path)
    except FileNotFoundError:
        raise ConfigFileError(f"configuration file {path!r} does not exist", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"configuration file {path!r} cannot be read: {exc}", file=path) from exc
    except configparser.Error as exc:
        raise ConfigFileError(f"configuration file {path!r} is not valid INI: {exc}", file=path) from exc
    return parser


def read_secret_file(path: str, *, section: str, option: str, variable: Optional[str] = None) -> str:
    """The content of a file holding a secret, without its final line break.

    Raises :class:`ConfigFileError` naming the file and ``option`` of ``section``
    (and the environment ``variable`` that named the file, if any), never the content.
    """
    full = os.path.abspath(os.path.expanduser(path))
    try:
        with open(full, encoding="utf-8") as handle:
            return handle.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
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
