"""Benchmark log-relay: records/s accepted (durable), and end to end to a local SMTP sink.

Run:  .venv/bin/python bench/bench_log_relay.py [--records 400000] [--senders 8]

Measurements in one run, each against a fresh subprocess (or spool), with the same
8 sender threads writing pre-built alarm lines as fast as TCP takes them:

1. baselines: a plain asyncio server that only counts lines (no parsing, no disk:
   the transport's upper bound), and the same parsed records written to a spool
   with the same durability (WAL, synchronous=FULL) in this process, no network:
   one commit per record (what a naive durable receiver does: the baseline the
   "vs 1 commit/record" column compares with), and in batches of 5,000 (the
   disk's share of the relay's cost);
2. accepted: ``log-relay`` with the spool's durability on (WAL, synchronous=FULL);
   a record counts once it is committed (timed until the spool holds them all);
   once with this project's lines, once with 0.5.x records sent back to back;
3. end to end: ``log-relay`` mailing digests to a local aiosmtpd over STARTTLS + AUTH
   (certificates from a trustme CA); timed until the outbox is empty.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from bench_support import free_port

BASELINE_SERVER = textwrap.dedent("""
    import asyncio, sys

    class Count(asyncio.Protocol):
        lines = 0
        def data_received(self, data):
            Count.lines += data.count(b"\\n")

    async def main():
        server = await asyncio.get_running_loop().create_server(Count, "127.0.0.1", int(sys.argv[1]))
        async def report():
            while True:
                await asyncio.sleep(0.005)
                with open(sys.argv[2] + ".tmp", "w") as out:
                    out.write(str(Count.lines))
                import os; os.replace(sys.argv[2] + ".tmp", sys.argv[2])
        await asyncio.gather(server.serve_forever(), report())

    asyncio.run(main())
""")


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.02)


def payload(sender: int, count: int, end: str = "\n") -> bytes:
    """``end="\n"``: this project's lines; ``end=""``: lab-utils 0.5.x, back to back."""
    return b"".join(
        (f"{{cryostat{sender}}} --date {{2024-05-01 10:00:00}} --level {{ERROR}} "
         f"--app {{cryostat{sender}}} --module {{sensors}} --function {{read_all}} "
         f"--message {{temperature {i} K out of range on channel {i % 16}}}{end}").encode()
        for i in range(count))


def send_all(port: int, payloads: list[bytes]) -> float:
    """Send each payload from its own thread on its own connection; return the start time."""
    barrier = threading.Barrier(len(payloads) + 1)

    def sender(data: bytes) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            barrier.wait()
            view = memoryview(data)
            for start in range(0, len(data), 65536):
                sock.sendall(view[start:start + 65536])

    threads = [threading.Thread(target=sender, args=(data,)) for data in payloads]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return started


def wait_value(read, target: int, timeout: float) -> float:
    deadline = time.perf_counter() + timeout
    while True:
        value = read()
        if value >= target:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"reached {value} of {target} within {timeout} s")
        time.sleep(0.01)


def spool_reader(path: Path, sql: str):
    def read() -> int:
        if not path.exists():
            return 0
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5)
        try:
            return db.execute(sql).fetchone()[0] or 0
        except sqlite3.OperationalError:
            return 0
        finally:
            db.close()
    return read


def run_baseline(workdir: Path, payloads: list[bytes], total: int) -> float:
    port, counter = free_port(), workdir / "baseline.count"
    script = workdir / "baseline.py"
    script.write_text(BASELINE_SERVER)
    process = subprocess.Popen([sys.executable, str(script), str(port), str(counter)])
    try:
        wait_for_port(port)
        started = send_all(port, payloads)
        done = wait_value(lambda: int(counter.read_text() or 0) if counter.exists() else 0, total, 120)
        return total / (done - started)
    finally:
        process.kill()
        process.wait()


def spool_rows(payloads: list[bytes]) -> list[tuple]:
    """The records as the relay would spool them (parsed by its own parser)."""
    from log_relay.record_parser import RecordParser

    rows = []
    now = time.time()
    for data in payloads:
        parser = RecordParser()
        for r in parser.feed(data) + parser.flush():
            rows.append((now, "127.0.0.1", r.date, r.level, r.levelno, r.app, r.module, r.function,
                         r.message, r.note, None, None))
    return rows


def run_spool_baseline(workdir: Path, name: str, rows: list[tuple], batch: int,
                       max_seconds: float = 5.0) -> float:
    """Records/s committed straight into a spool (same schema and durability), ``batch`` per
    commit; stops after ``max_seconds`` (one commit per record is slow: it is an fsync each)."""
    from log_relay.spool import Spool

    spool = Spool.open(str(workdir / f"{name}.sqlite3"))
    try:
        next_id, done = spool.next_record_id(), 0
        started = time.perf_counter()
        while done < len(rows) and time.perf_counter() - started < max_seconds:
            chunk = rows[done:done + batch]
            spool.append(chunk, first_id=next_id, sinks=("mail",), min_level=30)
            next_id += len(chunk)
            done += len(chunk)
        return done / (time.perf_counter() - started)
    finally:
        spool.close()


def relay_env(workdir: Path, port: int, spool: Path, smtp=None, **relay: str) -> dict:
    env = dict(os.environ, LABUTILS_RELAY_HOST="127.0.0.1", LABUTILS_RELAY_PORT=str(port),
               LABUTILS_RELAY_SPOOL_PATH=str(spool), LABUTILS_RELAY_LOG_LEVEL="WARNING",
               LABUTILS_MAILHANDLER_MAIL_HOST="127.0.0.1", LABUTILS_MAILHANDLER_SENDER="relay@lab.test",
               LABUTILS_MAILHANDLER_RECIPIENTS="oncall@lab.test",
               LABUTILS_MAILHANDLER_PORT=str(smtp.port if smtp else free_port()))
    if smtp is not None:
        credentials = workdir / "smtp-credentials"
        credentials.write_text(f"{smtp.username}\n{smtp.password}\n")
        env.update(LABUTILS_MAILHANDLER_CREDENTIALS_FILE=str(credentials),
                   LABUTILS_MAILHANDLER_CA_FILE=smtp.ca_file)
    env.update({f"LABUTILS_RELAY_{key.upper()}": value for key, value in relay.items()})
    return env


def run_relay(workdir: Path, name: str, payloads: list[bytes], total: int, smtp=None,
              **relay: str) -> tuple[float, float]:
    """Return (records/s accepted, records/s delivered or 0)."""
    port, spool = free_port(), workdir / f"{name}.sqlite3"
    env = relay_env(workdir, port, spool, smtp, **relay)
    process = subprocess.Popen([sys.executable, "-m", "log_relay", "run"], env=env)
    try:
        wait_for_port(port)
        started = send_all(port, payloads)
        accepted = wait_value(spool_reader(spool, "SELECT MAX(id) FROM records"), total, 300)
        delivered_rate = 0.0
        if smtp is not None:
            pending = spool_reader(spool, "SELECT COUNT(*) FROM outbox")
            wait_value(lambda: total if pending() == 0 else 0, total, 300)
            delivered_rate = total / (time.perf_counter() - started)
        return total / (accepted - started), delivered_rate
    finally:
        process.terminate()
        process.wait(30)


def sequenced_payload(sender: int, count: int, size: int = 0) -> bytes:
    """This project's lines with sequence numbers 1..count, as sent after a hello."""
    from lab_utils_common.alarm_wire import sequenced_line

    pad = "x" * size
    return b"".join(sequenced_line(
        i + 1, f"{{cryostat{sender}}} --date {{2024-05-01 10:00:00}} --level {{ERROR}} "
               f"--app {{cryostat{sender}}} --module {{sensors}} --function {{read_all}} "
               f"--message {{temperature {i} K out of range on channel {i % 16}{pad}}}")
        for i in range(count))


def send_acknowledged(port: int, payloads: list[bytes], counts: list[int]) -> tuple[float, float]:
    """Each payload from its own thread and connection, speaking the acknowledgement protocol
    (hello, ready, sequenced lines, reading acks meanwhile); return (start, time the last
    sender had its last record acknowledged, i.e. committed)."""
    from lab_utils_common.alarm_wire import hello_line, parse_ack, parse_ready

    barrier = threading.Barrier(len(payloads) + 1)
    finished: list[float] = []

    def sender(index: int, data: bytes) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(hello_line(f"bench/{os.getpid()}/{index}"))
            replies = sock.makefile("rb")
            parse_ready(replies.readline())

            def read_acks() -> None:
                while parse_ack(replies.readline()) < counts[index]:
                    pass
                finished.append(time.perf_counter())

            reader = threading.Thread(target=read_acks)
            reader.start()
            barrier.wait()
            view = memoryview(data)
            for start in range(0, len(data), 65536):
                sock.sendall(view[start:start + 65536])
            reader.join()

    threads = [threading.Thread(target=sender, args=(i, data)) for i, data in enumerate(payloads)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return started, max(finished)


def run_relay_acknowledged(workdir: Path, name: str, payloads: list[bytes], counts: list[int],
                           **relay: str) -> tuple[float, int]:
    """Return (records/s acknowledged = committed, peak RSS of the relay in bytes)."""
    port, spool = free_port(), workdir / f"{name}.sqlite3"
    env = relay_env(workdir, port, spool, None, group_wait="600", **relay)
    process = subprocess.Popen([sys.executable, "-m", "log_relay", "run"], env=env)
    try:
        wait_for_port(port)
        started, done = send_acknowledged(port, payloads, counts)
        with open(f"/proc/{process.pid}/status") as status:
            peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
        return sum(counts) / (done - started), peak
    finally:
        process.terminate()
        process.wait(30)


class SmtpSink:
    """aiosmtpd with STARTTLS + AUTH, counting messages and the records they report."""

    username, password = "bench", "bench-password"

    def __init__(self, workdir: Path) -> None:
        import ssl

        import trustme
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        ca = trustme.CA()
        self.ca_file = str(workdir / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.messages = 0
        self.port = free_port()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.messages += 1
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            return AuthResult(success=auth_data.login == b"bench", handled=False)

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     tls_context=context, require_starttls=True,
                                     authenticator=authenticate, auth_required=True)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=400_000, help="records per measurement")
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--big-records", type=int, default=4000,
                        help="60 KB records in the memory measurement")
    args = parser.parse_args()
    per_sender = args.records // args.senders
    total = per_sender * args.senders
    payloads = [payload(sender, per_sender) for sender in range(args.senders)]
    size = sum(len(p) for p in payloads) / total
    import logging
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's deprecation chatter
    with tempfile.TemporaryDirectory(prefix="bench-log-relay-") as tmp:
        workdir = Path(tmp)
        baseline = run_baseline(workdir, payloads, total)
        rows = spool_rows(payloads)
        per_record = run_spool_baseline(workdir, "per-record", rows, batch=1)
        batched = run_spool_baseline(workdir, "batched", rows, batch=5000)
        accepted, _ = run_relay(workdir, "accept", payloads, total, group_wait="600")
        counts = [per_sender] * args.senders
        acked, _ = run_relay_acknowledged(
            workdir, "acked", [sequenced_payload(sender, per_sender) for sender in range(args.senders)],
            counts)
        big_counts = [args.big_records // args.senders] * args.senders
        _, peak_rss = run_relay_acknowledged(
            workdir, "big", [sequenced_payload(sender, big_counts[sender], size=60_000)
                             for sender in range(args.senders)], big_counts)
        old_payloads = [payload(sender, per_sender, end="") for sender in range(args.senders)]
        accepted_old, _ = run_relay(workdir, "accept-old", old_payloads, total, group_wait="600")
        smtp = SmtpSink(workdir)
        try:
            e2e_accepted, delivered = run_relay(workdir, "e2e", payloads, total, smtp,
                                                group_wait="0.5", group_interval="1")
        finally:
            smtp.stop()
    print(f"\nlog-relay benchmark: {total:,} records of {size:.0f} bytes, {args.senders} senders, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}")
    print(f"| {'measurement':<52} | {'records/s':>10} | {'vs 1 commit/record':>18} "
          f"| {'vs line counter':>15} |")
    print(f"|{'-' * 54}|{'-' * 12}|{'-' * 20}|{'-' * 17}|")
    table = [("baseline: asyncio server counting lines (no disk)", baseline),
             ("baseline: spool, 1 commit per record (fsync on)", per_record),
             ("baseline: spool, 5,000 records per commit", batched),
             ("log-relay accepted (parsed, committed, fsync on)", accepted),
             ("log-relay acknowledged (acks on, fsync on)", acked),
             ("log-relay accepted, 0.5.x records (no terminator)", accepted_old),
             ("log-relay accepted while mailing (end-to-end run)", e2e_accepted),
             (f"log-relay end to end: delivered ({smtp.messages} mails, STARTTLS)", delivered)]
    for label, rate in table:
        print(f"| {label:<52} | {rate:>10,.0f} | {rate / per_record:>17.1f}x "
              f"| {rate / baseline:>14.1%} |")
    target = 20_000
    print(f"\ntarget >= {target:,} records/s accepted: {'met' if accepted >= target else 'NOT met'}")
    ratio = acked / batched
    print(f"acknowledged / 'spool, 5,000 records per commit' (same run): {ratio:.2f} "
          f"({acked:,.0f} vs {batched:,.0f} records/s; target >= 0.6: "
          f"{'met' if ratio >= 0.6 else 'NOT met'})")
    bound = 64 << 20
    print(f"peak RSS of the relay during a flood of {sum(big_counts):,} records of 60 KB "
          f"({args.senders} acknowledged senders): {peak_rss / (1 << 20):.0f} MiB = "
          f"{peak_rss / bound:.2f}x the byte bound max_backlog_bytes = 64 MiB (target < 2x: "
          f"{'met' if peak_rss < 2 * bound else 'NOT met'})")


if __name__ == "__main__":
    main()
