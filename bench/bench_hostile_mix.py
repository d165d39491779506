"""Well-behaved clients of socket-daemon while hostile ones attack it, against a clean run of the same run.

One socket-daemon process; this process runs 64 well-behaved clients in a closed loop (connect,
``echo hello``, half-close, read the reply, close), first alone (clean), then while a second
process runs 20 hostile clients, then alone again (after). The hostile mix, each in a loop:

- big: 1 MiB worst-case messages (``echo a a a ...``, just under max_message_size), reading the reply;
- trickle: 4097 bytes at once (past the 0.5.x gap framing) then one byte a second, never ending;
- idle: connect and send nothing until the daemon closes, then again.

Printed: replies/s, errors, p50/p99 of the well-behaved clients per phase (a failed or timed-out
request counts with its elapsed time), their replies/s ratio hostile / clean (target >= 0.8) and
p99 under attack (target < 50 ms), the daemon's RSS after each phase and its peak (VmHWM).
Every request has a timeout and every phase a duration: the run is bounded even when the
daemon freezes (the daemon is killed at the end). Traffic goes to 127.0.0.1 only.

    .venv/bin/python bench/bench_hostile_mix.py [--duration 5] [--clients 64] [--big 7] [--trickle 7] [--idle 6]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_support import exchange, free_port, wait_ready

MESSAGE = b"echo hello"
REPLY = b"hello"
MAX_MESSAGE_SIZE = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent

# The attackers, as a separate process so their CPU time is not taken from the measuring loop.
HOSTILE = r"""
import asyncio, socket, sys, time
port, big, trickle, idle = (int(value) for value in sys.argv[1:5])
duration = float(sys.argv[5])
WORDS = (1024 * 1024 - len(b"echo ")) // 2
BIG = b"echo " + b"a " * WORDS     # 1048575 bytes: the longest accepted message, one word per 2 bytes
end = time.monotonic() + duration
connected = 0

async def connect():
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 5)
    return loop, sock

async def drain(loop, sock, timeout):
    while True:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)
        if not chunk:
            return

async def forever(kind, body):
    global connected
    first = True
    while time.monotonic() < end:
        try:
            loop, sock = await connect()
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.1)
            continue
        if first:
            connected += 1
            first = False
            if connected == big + trickle + idle:
                print("ready", flush=True)
        try:
            await body(loop, sock)
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            sock.close()

async def big_body(loop, sock):
    await asyncio.wait_for(loop.sock_sendall(sock, BIG), 60)
    sock.shutdown(socket.SHUT_WR)
    await drain(loop, sock, 60)

async def trickle_body(loop, sock):
    await loop.sock_sendall(sock, b"echo " + b"x" * 4092)
    while time.monotonic() < end:
        await asyncio.sleep(1.0)
        await asyncio.wait_for(loop.sock_sendall(sock, b"y"), 5)

async def idle_body(loop, sock):
    await drain(loop, sock, max(0.1, end - time.monotonic()))

async def main():
    tasks = [forever("big", big_body) for _ in range(big)]
    tasks += [forever("trickle", trickle_body) for _ in range(trickle)]
    tasks += [forever("idle", idle_body) for _ in range(idle)]
    await asyncio.wait([asyncio.ensure_future(task) for task in tasks], timeout=duration + 5)

asyncio.run(main())
"""


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def one_request(loop: asyncio.AbstractEventLoop, port: int) -> bool:
    return await exchange(loop, port, MESSAGE) == REPLY


async def closed_loop(port: int, clients: int, duration: float, timeout: float) -> dict:
    """``clients`` well-behaved clients for ``duration`` s; a request gives up after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    replies = errors = 0
    end = time.monotonic() + duration

    async def worker() -> None:
        nonlocal replies, errors
        while time.monotonic() < end:
            start = time.perf_counter()
            try:
                ok = await asyncio.wait_for(one_request(loop, port), timeout)
            except (TimeoutError, OSError):
                ok = False
            latencies.append(time.perf_counter() - start)
            if ok:
                replies += 1
            else:
                errors += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.monotonic() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {"rate": replies / elapsed, "errors": errors, "p50": pct(0.50), "p99": pct(0.99)}


def start_daemon(port: int, workdir: str) -> subprocess.Popen:
    logging_ini = Path(workdir) / "logging.ini"
    logging_ini.write_text("[ConsoleLogger]\nactive = 1\nuse_coloured_output = 0\nlog_level = WARNING\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABUTILS_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "socket_daemon", "--host", "127.0.0.1", "--port", str(port),
         "--pid-file", str(Path(workdir) / "daemon.pid"), "--logging-config", str(logging_ini)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    wait_ready(port, process)
    return process


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL: a daemon frozen by a message may ignore SIGTERM."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase (default 5)")
    parser.add_argument("--clients", type=int, default=64, help="well-behaved clients (default 64)")
    parser.add_argument("--big", type=int, default=7, help="hostile clients sending 1 MiB messages (7)")
    parser.add_argument("--trickle", type=int, default=7, help="hostile clients trickling bytes (7)")
    parser.add_argument("--idle", type=int, default=6, help="hostile clients holding idle sockets (6)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds a well-behaved request may take before it counts as failed (5)")
    args = parser.parse_args()
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        daemon = start_daemon(port, workdir)
        hostile = None
        try:
            asyncio.run(closed_loop(port, 4, 0.5, args.timeout))  # warm-up
            rows["clean"] = asyncio.run(closed_loop(port, args.clients, args.duration, args.timeout))
            rows["clean"]["rss"] = memory_kib(daemon.pid, "VmRSS")
            attack = args.duration + 2 * args.timeout + 5  # outlives the measured phase
            hostile = subprocess.Popen(
                [sys.executable, "-c", HOSTILE, str(port), str(args.big), str(args.trickle),
                 str(args.idle), str(attack)], stdout=subprocess.PIPE, text=True)
            # Measure once every attacker has connected (or after 5 s: a frozen daemon accepts late).
            if select.select([hostile.stdout], [], [], 5)[0]:
                hostile.stdout.readline()
            rows["hostile"] = asyncio.run(closed_loop(port, args.clients, args.duration, args.timeout))
            rows["hostile"]["rss"] = memory_kib(daemon.pid, "VmRSS")
            stop(hostile)
            rows["after"] = asyncio.run(closed_loop(port, args.clients, args.duration, args.timeout))
            rows["after"]["rss"] = memory_kib(daemon.pid, "VmRSS")
            peak = memory_kib(daemon.pid, "VmHWM")
        finally:
            if hostile is not None:
                stop(hostile)
            stop(daemon)
    clean, attacked = rows["clean"], rows["hostile"]
    ratio = attacked["rate"] / clean["rate"] if clean["rate"] else float("nan")
    print(f"socket-daemon, {args.clients} well-behaved clients (echo hello, closed loop, request timeout "
          f"{args.timeout:g} s), phases of {args.duration:g} s; hostile: {args.big} x 1 MiB 'echo a a a ...', "
          f"{args.trickle} trickling, {args.idle} idle; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'phase':8} {'replies/s':>10} {'errors':>7} {'p50 ms':>9} {'p99 ms':>9} {'RSS MiB':>8}")
    for phase, row in rows.items():
        print(f"{phase:8} {row['rate']:10.0f} {row['errors']:7d} {row['p50']:9.2f} {row['p99']:9.2f} "
              f"{row['rss'] / 1024:8.1f}")
    print(f"ratio hostile/clean replies/s: {ratio:.2f} (target >= 0.8: {'met' if ratio >= 0.8 else 'MISSED'}); "
          f"p99 under attack {attacked['p99']:.1f} ms (target < 50 ms: "
          f"{'met' if attacked['p99'] < 50 else 'MISSED'}); daemon peak RSS (VmHWM) {peak / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
