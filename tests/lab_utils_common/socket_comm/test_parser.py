"""ArgumentParser: errors become MessageError, full_help lists every command and argument."""

import pytest

from lab_utils_common.socket_comm import ArgumentParser, MessageError


def make_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="daemon", description="test daemon", epilog="the end")
    sp = parser.add_subparsers(title="command", description="Daemon actions")
    read = sp.add_parser("read", description="reads a channel")
    read.add_argument("channel", help="channel name")
    read.add_argument("--average", help="samples to average")
    read.set_defaults(which="read")
    sp.add_parser("quit", description="stops the daemon").set_defaults(which="quit")
    return parser


def test_valid_message_parses():
    namespace = make_parser().parse_args(["read", "ch 1", "--average", "4"])
    assert (namespace.which, namespace.channel, namespace.average) == ("read", "ch 1", "4")


@pytest.mark.parametrize("words, text", [
    (["bogus"], "invalid choice: 'bogus'"),
    (["read"], "the following arguments are required: channel"),
    (["read", "a", "b"], "unrecognized arguments: b"),
])
def test_errors_raise_message_error_with_argparse_text(words, text):
    with pytest.raises(MessageError, match=text):
        make_parser().parse_args(words)


def test_message_error_is_not_an_exception_subclass():
    # as in 0.5.x: a handler's "except Exception" does not swallow it
    assert issubclass(MessageError, BaseException) and not issubclass(MessageError, Exception)


def test_help_flag_does_not_exit():
    parser = ArgumentParser(prog="daemon", add_help=True)
    with pytest.raises(MessageError):
        parser.parse_args(["-h"])


def test_full_help_lists_commands_arguments_and_epilog():
    text = make_parser().full_help()
    assert "DAEMON HELP" in text and "test daemon" in text and text.rstrip().endswith("the end")
    assert "read              reads a channel" in text
    assert "channel            channel name" in text
    assert "[--average]        samples to average" in text
    assert "quit              stops the daemon" in text


def test_full_help_without_description_or_epilog():
    parser = ArgumentParser(prog="daemon")
    parser.add_subparsers().add_parser("x")
    assert "Commands:" in parser.full_help()
