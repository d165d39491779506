"""Incremental parsing of alarm records as they arrive on one TCP connection.

Two senders share the port:

* this project's ``NonPickledSocketHandler``: one record per line, ``\\n``-terminated,
  the message escaped with :func:`lab_utils_common.alarm_wire.escape_message`;
* lab-utils 0.5.x: the same text with **no terminator**, records back to back, a
  message that may itself hold ``}`` or line breaks (a traceback, for example).

So records are delimited by where the next one *starts* (``{name} --date {``),
and, once a connection has shown it sends this project's lines (a record ending
with a line end), a record ending in ``}\\n`` is complete at once. Before that,
and on a 0.5.x connection, it is not: a 0.5.x message may hold ``}\\n`` and a
read may end right after it. The
last 0.5.x record of a burst has nothing after it: :meth:`RecordParser.flush`
emits it once the connection has been quiet for a moment (the receiver's
``tail_wait``) or closes. Input that is not a record is kept as raw text with a
note, line by line; a record longer than ``max_record_size`` bytes is cut there,
marked, and the rest of it skipped up to the next record.

Example::

    parser = RecordParser(max_record_size=65536)
    records = parser.feed(b"{pump} --date {2021-04-14 10:00:00} --level {ERROR} --app {pump} "
                          b"--module {m} --function {f} --message {too hot}\\n")
    records[0].app, records[0].message        # ('pump', 'too hot')
"""

from __future__ import annotations

import logging
import re
from typing import NamedTuple, Optional

from lab_utils_common.alarm_wire import LINE_PATTERN, unescape_message

__all__ = ["ParsedRecord", "RecordParser", "UNPARSED_LEVEL", "level_number", "parse_line",
           "parse_sequenced",
           "merge_raw"]

#: The level given to input that is not a record (it is always delivered).
UNPARSED_LEVEL = "UNPARSED"

# Where a record starts. Field values never hold braces or line breaks in practice
# (logger names, dates); only the message may, and it comes last.
_START = re.compile(rb"\{[^{}\r\n]{0,512}\} --date \{")
_START_MAX = 512 + 11
_FIELD = rb"\{([^{}\r\n]*)\}"
_HEADER = re.compile(
    _FIELD + rb" --date " + _FIELD + rb" --level " + _FIELD + rb" --app " + _FIELD
    + rb" --module " + _FIELD + rb" --function " + _FIELD + rb" --message \{")

# logging.Formatter appends exc_text / stack_info after the formatted message.
_TRACE = re.compile(rb"\}\n(?:Traceback|Stack) \(most recent call last\):")

_LEVELS = {"DEBUG": 10, "INFO": 20, "SUCCESS": 25, "WARNING": 30, "WARN": 30,
           "ERROR": 40, "CRITICAL": 50, "FATAL": 50}
_LEVEL_N = re.compile(r"Level (\d+)")


def level_number(level: Optional[str]) -> Optional[int]:
    """The numeric level of a level name (``SUCCESS`` is 25, ``Level 45`` is 45); None if unknown."""
    if level is None:
        return None
    number = _LEVELS.get(level.upper())
    if number is not None:
        return number
    match = _LEVEL_N.fullmatch(level)
    if match:
        return int(match.group(1))
    found = logging.getLevelName(level.upper())
    return found if isinstance(found, int) else None


class ParsedRecord(NamedTuple):
    """One received record. ``level`` is :data:`UNPARSED_LEVEL` and ``message`` the raw
    text when the input was not a record; ``note`` says what was unusual, or is None."""

    date: Optional[str]
    level: str
    app: Optional[str]
    module: Optional[str]
    function: Optional[str]
    message: str
    note: Optional[str]

    @property
    def levelno(self) -> Optional[int]:
        """The numeric level, None for unknown or unparsed levels."""
        return level_number(None if self.level == UNPARSED_LEVEL else self.level)


def _decode(data: bytes) -> tuple[str, bool]:
    try:
        return data.decode("utf-8"), True
    except UnicodeDecodeError:
        return data.decode("utf-8", "backslashreplace"), False


def _join_notes(*notes: Optional[str]) -> Optional[str]:
    kept = [note for note in notes if note]
    return "; ".join(kept) if kept else None


def parse_record(data: bytes, note: Optional[str] = None) -> ParsedRecord:
    """Parse one complete record (bytes between two record starts); never raises."""
    header = _HEADER.match(data)
    if header is None:
        return raw_record(data, note)
    rest = data[header.end():]
    stripped = rest.rstrip(b"\r\n")
    if len(stripped) != len(rest) and stripped.endswith(b"}"):
        # "}\n": this project's line, the message escaped so that it is one line.
        body, complete, escaped = stripped[:-1], True, True
    elif rest.endswith(b"}"):
        # 0.5.x. 0.5.4's configure_logging puts the traceback inside the braces; a message
        # may hold "}" + line break + "Traceback" itself ("failed with {ctx}" + exc_info).
        body, complete, escaped = rest[:-1], True, False
    else:
        # 0.5.x with a plain logging.Formatter and exc_info: "...--message {text}\nTraceback
        # ..." (the traceback after the closing brace). Keep the traceback.
        trace = _TRACE.search(rest)
        cut = trace.start() if trace else rest.find(b"}\n")
        if cut >= 0:
            body, complete, escaped = rest[:cut] + rest[cut + 1:], True, False
        else:
            body, complete, escaped = stripped, False, False
    message, valid = _decode(body)
    if escaped:
        message = unescape_message(message)
    fields = [_decode(value)[0] for value in header.groups()]
    return ParsedRecord(
        date=fields[1], level=fields[2], app=fields[3], module=fields[4], function=fields[5],
        message=message,
        note=_join_notes(
            note,
            None if complete or note else "message not closed by '}'",
            None if valid else "invalid UTF-8 shown as \\x escapes"))


def raw_record(data: bytes, note: Optional[str] = None) -> ParsedRecord:
    """Wrap input that is not a record: kept as text, with a note saying so."""
    text, valid = _decode(data.rstrip(b"\r\n"))
    return ParsedRecord(
        date=None, level=UNPARSED_LEVEL, app=None, module=None, function=None, message=text,
        note=_join_notes(_RAW_NOTE, note,
                         None if valid else "invalid UTF-8 shown as \\x escapes"))


# A whole line of this project's sender, matched on decoded text: the hot path. The format
# has one home, lab_utils_common.alarm_wire.
_SEQUENCED = re.compile(LINE_PATTERN + r"\n")


def parse_sequenced(data: bytes, max_record_size: int, received_at: float, peer: str,
                    sender: Optional[str]) -> list[tuple]:
    """Parse complete sequenced lines (``data`` ends with a line end) into spool rows
    (:data:`log_relay.spool.RecordRow`; ``sender`` None for a line without sequence number).

    Well-formed lines (nearly all) go through one regular expression over the whole chunk;
    anything else (invalid UTF-8, junk, over-long lines) through :func:`parse_line`.
    """
    out: list[tuple] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        _slow_lines(data, max_record_size, out, received_at, peer, sender)
        return out
    position = 0
    levels = _LEVELS
    for match in _SEQUENCED.finditer(text):
        start, end = match.span()
        if start != position:
            _slow_lines(text[position:start].encode("utf-8"), max_record_size, out, received_at,
                        peer, sender)
        if end - start > max_record_size:
            _slow_lines(text[start:end].encode("utf-8"), max_record_size, out, received_at, peer,
                        sender)
        else:
            seq, _name, date, level, app, module, function, message = match.groups()
            if "\\" in message:
                message = unescape_message(message)
            levelno = levels.get(level)
            if levelno is None:
                levelno = level_number(level)
            out.append((received_at, peer, date, level, levelno, app, module, function, message,
                        None, None if seq is None else sender, None if seq is None else int(seq)))
        position = end
    if position != len(text):
        _slow_lines(text[position:].encode("utf-8"), max_record_size, out, received_at, peer,
                    sender)
    return out


def _slow_lines(data: bytes, max_record_size: int, out: list[tuple], received_at: float,
                peer: str, sender: Optional[str]) -> None:
    from lab_utils_common.alarm_wire import split_sequenced

    for line in data.split(b"\n"):
        if line:
            seq, text = split_sequenced(line)
            r = parse_line(text, max_record_size)
            out.append((received_at, peer, r.date, r.level, r.levelno, r.app, r.module,
                        r.function, r.message, r.note, None if seq is None else sender, seq))


def parse_line(data: bytes, max_record_size: int) -> ParsedRecord:
    """Parse one line of this project's sender (without its sequence number), cut at
    ``max_record_size`` bytes with a note."""
    if len(data) > max_record_size:
        note = (f"record of {len(data)} bytes cut at max_record_size = {max_record_size} "
                "bytes; the rest was discarded")
        head = data[:max_record_size]
        return parse_record(head, note) if _HEADER.match(head) else raw_record(head, note)
    if not data.endswith(b"\n"):
        data += b"\n"
    return parse_record(data) if _START.match(data) else raw_record(data)


_RAW_NOTE = "not a lab-utils record: kept as raw text"


def merge_raw(records: list[ParsedRecord], max_size: int) -> list[ParsedRecord]:
    """Fold consecutive raw-text records (lines that are not records, from one connection)
    into records of up to ``max_size`` characters: 2 MB of garbage is a few records, not
    200,000 (and not 40 mails)."""
    out: list[ParsedRecord] = []
    run: list[ParsedRecord] = []

    def close_run() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            notes = {note for r in run for note in (r.note or "").split("; ")
                     if note and note != _RAW_NOTE}
            out.append(ParsedRecord(
                date=None, level=UNPARSED_LEVEL, app=None, module=None, function=None,
                message="\n".join(r.message for r in run),
                note=_join_notes(f"{len(run)} lines that are not lab-utils records: kept as raw "
                                 "text", *sorted(notes))))
        run.clear()

    size = 0
    for record in records:
        if record.level == UNPARSED_LEVEL and record.note and record.note.startswith(_RAW_NOTE):
            if run and size + len(record.message) + 1 > max_size:
                close_run()
                size = 0
            run.append(record)
            size += len(record.message) + 1
        else:
            close_run()
            size = 0
            out.append(record)
    close_run()
    return out


class RecordParser:
    """Split one connection's byte stream into :class:`ParsedRecord` objects.

    Call :meth:`feed` with each chunk received; call :meth:`flush` after a quiet
    moment or at end of stream to get the record still being held (:attr:`pending`).

    Example::

        parser = RecordParser()
        records = parser.feed(chunk)
        if parser.pending:
            ...                                   # later, if nothing more arrives:
            records += parser.flush()
    """

    def __init__(self, max_record_size: int = 65536) -> None:
        if max_record_size < 64:
            raise ValueError(f"max_record_size {max_record_size} is too small (at least 64 bytes)")
        self.max_record_size = max_record_size
        self._buffer = b""
        self._skipping = False  # inside the rest of a record that was cut
        # Which sender this connection has: None until known, "line" (this project's: each
        # record ends with "\n") or "legacy" (0.5.x: no terminator). Only on a "line"
        # connection does "}\n" end a record at once: a 0.5.x message may hold "}\n" (a
        # traceback, pretty-printed JSON) and a TCP read may end right there.
        self._sender: Optional[str] = None

    @property
    def pending(self) -> bool:
        """True if bytes are held that do not form a complete record yet."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[ParsedRecord]:
        """Add received bytes; return the records they complete."""
        buffer = self._buffer + data if self._buffer else data
        out: list[ParsedRecord] = []
        if self._skipping:
            buffer = self._skip_rest(buffer)
            if self._skipping:
                self._buffer = buffer
                return out
        position = 0
        start = None
        for match in _START.finditer(buffer):
            here = match.start()
            if start is None:
                if here > position:
                    self._raw_lines(buffer[position:here], out)
            else:
                record = buffer[start:here]
                self._learn_sender(record)
                out.append(self._limited(record))
            start = here
        if start is None:
            # No record in sight: complete lines are raw input, a partial line waits.
            cut = buffer.rfind(b"\n") + 1
            if cut:
                self._raw_lines(buffer[:cut], out)
            tail = buffer[cut:]
        else:
            tail = buffer[start:]
            if self._sender == "line" and (tail.endswith(b"}\n") or tail.endswith(b"}\r\n")):
                out.append(self._limited(tail))
                tail = b""
        if len(tail) > self.max_record_size:
            out.append(self._cut(tail))
            tail = b""
            self._skipping = True
        self._buffer = tail
        return out

    def flush(self) -> list[ParsedRecord]:
        """Return the held bytes as a record (the connection is quiet or closed)."""
        tail, self._buffer = self._buffer, b""
        skipping, self._skipping = self._skipping, False
        if skipping or not tail.strip():
            return []
        if _START.match(tail):
            self._learn_sender(tail)
            return [self._limited(tail)]
        out: list[ParsedRecord] = []
        self._raw_lines(tail, out)
        return out

    # ------------------------------------------------------------------ internals

    def _learn_sender(self, record: bytes) -> None:
        """A whole record tells the sender: a 0.5.x record never ends with a line end."""
        if self._sender != "legacy":
            self._sender = "line" if record.endswith(b"\n") else "legacy"

    def _raw_lines(self, data: bytes, out: list[ParsedRecord]) -> None:
        for line in data.split(b"\n"):
            if line.strip():
                out.append(self._limited(line, raw=True))

    def _limited(self, data: bytes, raw: bool = False) -> ParsedRecord:
        if len(data) > self.max_record_size:
            return self._cut(data, total=len(data), raw=raw)
        return raw_record(data) if raw else parse_record(data)

    def _cut(self, data: bytes, total: Optional[int] = None, raw: bool = False) -> ParsedRecord:
        size = f"of {total} bytes" if total is not None else "longer than that"
        note = (f"record {size} cut at max_record_size = {self.max_record_size} bytes; "
                "the rest was discarded")
        head = data[:self.max_record_size]
        return raw_record(head, note) if raw else parse_record(head, note)

    def _skip_rest(self, buffer: bytes) -> bytes:
        """Drop the rest of a cut record: up to the next record start or line end."""
        match = _START.search(buffer)
        newline = buffer.find(b"\n")
        ends = [pos for pos in (match.start() if match else -1, newline + 1 if newline >= 0 else -1)
                if pos >= 0]
        if not ends:
            # Still inside the cut record; keep only what may be a partial record start.
            return buffer[-_START_MAX:]
        self._skipping = False
        return buffer[min(ends):]
