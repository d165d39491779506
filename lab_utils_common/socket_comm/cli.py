"""``lab-utils-client``: send one message to a daemon from the shell and print the reply.

Exit status: 0 reply received, 1 the reply is an error (``Error! ...``),
2 bad usage or configuration, 3 no connection or no reply in time.
"""

from __future__ import annotations

import argparse
import configparser
import sys
from typing import Optional, Sequence

from .auth_token import TokenFileError
from .client import Client
from .message import is_error_reply

__all__ = ["main", "join_words", "EXIT_OK", "EXIT_ERROR_REPLY", "EXIT_USAGE", "EXIT_CONNECTION"]

EXIT_OK = 0
EXIT_ERROR_REPLY = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3


def join_words(words: Sequence[str]) -> str:
    """One argument is the whole message; of several, a word with spaces is put in braces."""
    if len(words) == 1:
        return words[0]
    return " ".join(f"{{{word}}}" if " " in word and not word.startswith("{") else word for word in words)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lab-utils-client",
        description="Send a message to a lab-utils daemon and print its reply.",
        epilog="Exit status: 0 ok, 1 error reply, 2 usage or configuration error, "
               "3 connection failed or timed out. Example: lab-utils-client --port 1507 status")
    parser.add_argument("--host", help="daemon host (default: localhost, or [Overall] host)")
    parser.add_argument("--port", type=int, help="daemon port (default: 1507, or [Overall] port)")
    parser.add_argument("--config", metavar="FILE", help="INI file with [Overall] host, port, token_file")
    parser.add_argument("--token-file", metavar="F", help="file holding the shared token")
    parser.add_argument("--timeout", type=float, help="seconds to wait for the reply (default: 60)")
    parser.add_argument("message", nargs="+", metavar="MESSAGE",
                        help="the message; words in braces keep their spaces: set {my sensor} 3.5")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line client; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        client = Client(config_file=args.config, host=args.host, port=args.port,
                        token_file=args.token_file, timeout=args.timeout)
    except (configparser.Error, TokenFileError) as exc:
        print(f"lab-utils-client: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        reply = client.send_message(join_words(args.message))
    except OSError as exc:
        print(f"lab-utils-client: {exc}", file=sys.stderr)
        return EXIT_CONNECTION
    print(reply, end="" if reply.endswith("\n") else "\n")
    return EXIT_ERROR_REPLY if is_error_reply(reply) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
