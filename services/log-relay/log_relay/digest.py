"""Digests: many records of one group (app + level) turned into one notification.

Timing follows Alertmanager: the first record of a group goes out ``group_wait``
after it arrived (so a burst that starts together goes out together); once a
group has been notified, later records wait until ``group_interval`` after that
notification and then go out together, with counts. A flood of 10,000 records
becomes one mail per group and interval instead of 10,000.

Example::

    due = due_at(oldest_pending=t0, last_sent_at=None, group_wait=30, group_interval=300)
    digest = build_digest(records, app="pump", level="ERROR")
    digest.subject("{subject} [{level}] {app}: {first_message}{more}", "lab alarm")
    digest.body
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

from lab_utils_common.safe_text import display_text
from log_relay.record_parser import UNPARSED_LEVEL
from log_relay.spool import SpooledRecord

__all__ = ["Digest", "build_digest", "cut_record", "dead_letter_digest", "summary_digest", "due_at",
           "check_subject_template", "SUBJECT_FIELDS", "DEFAULT_SUBJECT_TEMPLATE"]

#: The placeholders a subject template may use.
SUBJECT_FIELDS = ("subject", "level", "app", "count", "first_message", "more", "host")

DEFAULT_SUBJECT_TEMPLATE = "{subject} [{level}] {app}: {first_message}{more}"

def _printable(text: Optional[str]) -> str:
    # A NUL, an escape sequence or a bidi override must not reach a mail client raw.
    return "" if text is None else display_text(text)


def due_at(oldest_pending: float, last_sent_at: Optional[float], group_wait: float,
           group_interval: float, backlog: bool = False) -> float:
    """When a group with undelivered records is due (epoch seconds).

    ``group_wait`` after its oldest undelivered record arrived, and not before
    ``group_interval`` after its last notification, unless the last one was cut
    short by the size limit (``backlog``): then the rest goes out at once.
    """
    due = oldest_pending + group_wait
    if last_sent_at is not None and not backlog:
        due = max(due, last_sent_at + group_interval)
    return due


def check_subject_template(template: str) -> str:
    """Return ``template`` if it formats with :data:`SUBJECT_FIELDS`, else raise ValueError."""
    sample = {name: "x" for name in SUBJECT_FIELDS}
    try:
        template.format(**sample)
    except KeyError as exc:
        raise ValueError(f"subject template {template!r} uses unknown placeholder {{{exc.args[0]}}} "
                         f"(known: {', '.join('{' + n + '}' for n in SUBJECT_FIELDS)})") from None
    except (ValueError, IndexError) as exc:
        raise ValueError(f"subject template {template!r} is not a valid format string: {exc}") from None
    return template


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


@dataclass(frozen=True)
class Digest:
    """One notification for a group: ``subject()``, ``body`` and, for long digests, an
    ``attachment`` (every record, one per line)."""

    app: str
    level: str
    records: Sequence[SpooledRecord]
    body: str
    attachment: Optional[str]
    remaining: int

    @property
    def app_label(self) -> str:
        return self.app or "unparsed input"

    def subject(self, template: str, base_subject: str) -> str:
        """Fill the subject template (see :data:`SUBJECT_FIELDS`)."""
        first = " ".join(_printable(self.records[0].message).split()) if self.records else ""
        if len(first) > 80:
            first = first[:77] + "..."
        count = len(self.records)
        return template.format(
            subject=base_subject, level=self.level, app=self.app_label, count=count,
            first_message=first, more=f" (+{count - 1} more)" if count > 1 else "",
            host=socket.gethostname())

    @property
    def summary(self) -> str:
        """One line for logs and the status: count, level, app."""
        return f"{len(self.records)} {self.level} record(s) from {self.app_label}"


def _record_line(record: SpooledRecord) -> str:
    where = ".".join(part for part in (record.module, record.function) if part)
    date = record.date or _when(record.received_at)
    head = f"{date}  {where}  " if where else f"{date}  "
    message = _printable(record.message).replace("\n", "\n    ")
    line = head + message
    extras = []
    if record.level == UNPARSED_LEVEL:
        extras.append(f"from {record.peer}")
    if record.note:
        extras.append(f"note: {record.note}")
    if extras:
        line += f"\n    [{'; '.join(extras)}]"
    return line


def build_digest(records: Sequence[SpooledRecord], *, app: str, level: str,
                 max_lines: int = 50, remaining: int = 0) -> Digest:
    """Summarise the records of one group: each record when few, distinct messages with
    counts (and every record attached) when many. ``remaining`` records follow later."""
    if not records:
        raise ValueError(f"no records to digest for group app={app!r} level={level!r}")
    count = len(records)
    first, last = records[0].received_at, records[-1].received_at
    label = app or "unparsed input"
    span = _when(first) if count == 1 else f"{_when(first)} to {_when(last)}"
    lines = [f"{count} record(s) of level {level} from {label}, received {span}.", ""]
    attachment = None
    if count <= max_lines:
        lines += [_record_line(record) for record in records]
    else:
        keys = Counter((r.module, r.function, r.message) for r in records)
        seen: dict = {}
        for record in records:
            key = (record.module, record.function, record.message)
            first_seen, _ = seen.get(key, (record, None))
            seen[key] = (first_seen, record)
        lines.append("Distinct messages, most frequent first (count, first and last seen):")
        for key, number in keys.most_common(max_lines):
            first_seen, last_seen = seen[key]
            where = ".".join(part for part in key[:2] if part)
            message = _printable(key[2]).replace("\n", "\n        ")
            lines.append(f"{number:>7}x  {first_seen.date or _when(first_seen.received_at)} .. "
                         f"{last_seen.date or _when(last_seen.received_at)}  "
                         f"{where + '  ' if where else ''}{message}")
        if len(keys) > max_lines:
            lines.append(f"... and {len(keys) - max_lines} more distinct message(s).")
        notes = sum(1 for record in records if record.note)
        if notes:
            lines.append(f"{notes} record(s) carry a note (cut, unparsed, invalid UTF-8).")
        lines.append("Every record is in the attached file records.txt.")
        attachment = "\n".join(_record_line(record) for record in records) + "\n"
    lines.append("")
    if remaining:
        lines.append(f"{remaining} more record(s) of this group are queued and follow in the next "
                     "notification.")
    lines.append(f"Relayed by log-relay on {socket.gethostname()} "
                 f"(spool record ids {records[0].id}..{records[-1].id}).")
    return Digest(app=app, level=level, records=list(records), body="\n".join(lines) + "\n",
                  attachment=attachment, remaining=remaining)


def cut_record(record: SpooledRecord, keep: int, error: str) -> SpooledRecord:
    """The record with its message cut to ``keep`` characters and a note saying why (the
    whole record stays in the spool)."""
    if len(record.message) <= keep:
        return record
    note = (f"message cut from {len(record.message)} to {keep} characters: the mail server "
            f"refused it whole ({error}); the whole record stays in the spool, id {record.id}")
    return record._replace(message=record.message[:keep],
                           note=f"{record.note}; {note}" if record.note else note)


def dead_letter_digest(parked: Sequence[tuple[SpooledRecord, str]]) -> Digest:
    """A digest of its own about records a sink refused for good (the dead letters)."""
    records = [record._replace(
        message=f"[{record.level} from {record.app or 'unparsed input'}] "
                + (record.message[:300] + "..." if len(record.message) > 300 else record.message),
        note=f"refused for good: {error}") for record, error in parked]
    digest = build_digest(records, app="log-relay", level="DEAD_LETTER", max_lines=len(records))
    body = (f"{len(records)} record(s) were refused by the mail server for good, even cut, and "
            "are parked in the spool as dead letters (log-relay status counts them).\n\n"
            + digest.body)
    return Digest(app="log-relay", level="DEAD_LETTER", records=records, body=body,
                  attachment=None, remaining=0)


def summary_digest(groups: dict, *, max_lines: int = 50) -> Digest:
    """One digest for many groups ({(app, level): records}): sent instead of one per group
    when a sink is over ``max_digests`` per ``group_interval`` (a flood of distinct apps)."""
    records = [record for batch in groups.values() for record in batch]
    lines = [f"{len(records)} record(s) from {len(groups)} group(s), summarised in one message "
             "because more groups than max_digests were due in one group_interval.", ""]
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    for (app, level), batch in ordered[:max_lines]:
        first = " ".join(_printable(batch[0].message).split())
        lines.append(f"{len(batch):>7}x  [{level}] {app or 'unparsed input'}: "
                     f"{first[:120] + '...' if len(first) > 120 else first}")
    if len(ordered) > max_lines:
        lines.append(f"... and {len(ordered) - max_lines} more group(s).")
    lines += ["", "Every record is in the attached file records.txt.",
              f"Relayed by log-relay on {socket.gethostname()}."]
    attachment = "\n".join(f"[{r.level}] {r.app or 'unparsed input'}  " + _record_line(r)
                           for r in records) + "\n"
    return Digest(app="several apps", level="SUMMARY", records=records,
                  body="\n".join(lines) + "\n", attachment=attachment, remaining=0)
