"""Command parsing: an :class:`argparse.ArgumentParser` that never exits the daemon.

``argparse`` prints to stderr and calls :func:`sys.exit` on a bad command line;
inside a daemon a bad message from one client must instead become an error
reply to that client. :class:`ArgumentParser` raises :class:`MessageError`
instead, and :meth:`ArgumentParser.full_help` lists every subcommand with its
arguments, which argparse's own help does not.
"""

from __future__ import annotations

import argparse
from typing import NoReturn, Optional

__all__ = ["ArgumentParser", "MessageError", "ReplacingSubParsersAction"]


class MessageError(BaseException):
    """Invalid message: the reply to the client starts with ``Error!`` and carries this text.

    A :class:`BaseException` as in lab-utils 0.5.x, so that a handler's broad
    ``except Exception`` does not swallow it. Handlers may raise it themselves::

        raise MessageError(f"no value named {name!r}")
    """


class ReplacingSubParsersAction(argparse._SubParsersAction):  # noqa: SLF001 - argparse's own extension point
    """Sub-parsers where adding an existing command name replaces it, silently, in its place.

    Python 3.11 made a second ``add_parser("status")`` an ``ArgumentError``; before, the
    later one won. lab-utils 0.5.x apps add their own ``status``/``help``/``quit`` on top
    of the built-ins, so the later registration wins again (keeping the command's position
    in the help).
    """

    def add_parser(self, name: str, **kwargs):  # type: ignore[override]
        """As :meth:`argparse._SubParsersAction.add_parser`; an existing ``name`` or alias is replaced."""
        aliases = tuple(kwargs.get("aliases", ()))
        order = list(self._name_parser_map)
        for key in (name, *aliases):
            if self._name_parser_map.pop(key, None) is not None:
                self._choices_actions[:] = [action for action in self._choices_actions
                                            if action.dest != key]
        parser = super().add_parser(name, **kwargs)
        if name in order:  # keep the replaced command's place in the help and the usage
            position = {key: index for index, key in enumerate(order)}
            items = sorted(self._name_parser_map.items(), key=lambda item: position.get(item[0], len(order)))
            self._name_parser_map.clear()
            self._name_parser_map.update(items)
        return parser


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser for daemon messages: errors raise :class:`MessageError`, no ``-h``.

    Example::

        parser = ArgumentParser(prog="daemon", description="my instrument daemon")
        sp = parser.add_subparsers(title="command", description="Daemon actions")
        sp.add_parser("read", description="reads the sensor").set_defaults(which="read")
        parser.parse_args(["read"])      # Namespace(which='read')
        parser.parse_args(["bogus"])     # raises MessageError("argument command: invalid choice ...")
    """

    def __init__(self, prog=None, usage=None, description=None, epilog=None, parents=None,
                 formatter_class=argparse.HelpFormatter, prefix_chars="-", fromfile_prefix_chars=None,
                 argument_default=None, conflict_handler="error", add_help=False, allow_abbrev=True):
        """Same parameters as :class:`argparse.ArgumentParser`, but ``add_help`` defaults to False."""
        # fromfile_prefix_chars stays None by default: '@path' in a client message must never
        # make the daemon read one of its files.
        super().__init__(prog=prog, usage=usage, description=description, epilog=epilog,
                         parents=[] if parents is None else parents, formatter_class=formatter_class,
                         prefix_chars=prefix_chars, fromfile_prefix_chars=fromfile_prefix_chars,
                         argument_default=argument_default, conflict_handler=conflict_handler,
                         add_help=add_help, allow_abbrev=allow_abbrev)
        self.register("action", "parsers", ReplacingSubParsersAction)

    def error(self, message: str) -> NoReturn:
        """Raise :class:`MessageError` instead of printing usage and exiting."""
        raise MessageError(message)

    def exit(self, status: int = 0, message: Optional[str] = None) -> NoReturn:
        """Raise :class:`MessageError` instead of exiting (``-h`` of a parser built with add_help=True)."""
        raise MessageError((message or "").strip() or "send the message 'help' for the list of commands")

    def full_help(self) -> str:
        """The complete help: description, usage, every subcommand with its arguments, epilog."""
        lines = ["", "DAEMON HELP"]
        if self.description:
            lines.append(self.description)
        lines.append(self.format_usage().rstrip("\n"))
        lines.append("")
        lines.append("Commands:")
        for action in self._actions:
            if not isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 - no public API for this
                continue
            for name, subparser in action.choices.items():
                lines.append(f"    {name:15}   {subparser.description or ''}".rstrip())
                for argument in subparser._actions:  # noqa: SLF001
                    if isinstance(argument, (argparse._HelpAction, argparse._SubParsersAction)):  # noqa: SLF001
                        continue
                    if argument.option_strings:
                        label = f"[{argument.option_strings[0]}]"
                    else:
                        label = argument.metavar if isinstance(argument.metavar, str) else argument.dest
                    lines.append(f"        {label:15}    {argument.help or ''}".rstrip())
        lines.append("")
        if self.epilog:
            lines.append(self.epilog)
        return "\n".join(lines)
