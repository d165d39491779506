"""The wire format helpers: splitting as 0.5.x, the auth line, decoding checks, error replies."""

import re

import pytest

import lab_utils_common.socket_comm as socket_comm
from lab_utils_common.socket_comm.message import add_token, decode_message, is_error_reply, split_message, take_token


def test_public_names_stay_what_they_are():
    assert set(socket_comm.__all__) >= {"Server", "Client", "ArgumentParser", "MessageError", "buffer_size"}
    assert socket_comm.buffer_size == 4096
    for name in socket_comm.__all__:
        assert hasattr(socket_comm, name), name


@pytest.mark.parametrize("message, words", [
    ("set_point {my sensor} 3.5", ["set_point", "my sensor", "3.5"]),
    ("quit", ["quit"]),
    ("echo {a b} {c} d", ["echo", "a b", "c", "d"]),
    ("log {two  spaces} x", ["log", "two  spaces", "x"]),
])
def test_split_keeps_spaces_inside_braces(message, words):
    assert split_message(message) == words


def test_split_matches_the_0_5_4_server():
    # the reference implementation, read from lab_utils 0.5.4's own regex
    old = re.compile(" (?![^{}]*})")
    message = "cmd {a b c} plain {x y}"
    assert split_message(message) == [w.strip(" {}") for w in old.split(message)]


def test_token_line_round_trip_and_absence():
    sent = add_token("status", "s3cret")
    assert sent == "#auth s3cret\nstatus"
    assert take_token(sent) == ("s3cret", "status")
    assert take_token("status") == (None, "status")
    assert add_token("status", None) == "status"


def test_token_line_is_refused_by_a_0_5_x_style_parse():
    # 0.5.x splits the line into words: the command word is '#auth', not the token
    assert split_message(add_token("quit", "s3cret").rstrip())[0] == "#auth"


def test_decode_names_the_bad_byte():
    with pytest.raises(ValueError, match=r"not valid UTF-8 text \(byte 0xff at position 3\)"):
        decode_message(b"abc\xffdef")


def test_decode_refuses_control_characters():
    with pytest.raises(ValueError, match=r"control character '\\x00' at position 1"):
        decode_message(b"a\x00b")
    assert decode_message("set {température} 21\n".encode()) == "set {température} 21\n"


@pytest.mark.parametrize("reply, error", [
    ("Error! bad", True), ("Unknown exception! Check daemon log!\nX: y", True),
    ("Daemon error, maybe", True), ("Goodbye!", False), ("", False),
])
def test_is_error_reply(reply, error):
    assert is_error_reply(reply) is error
