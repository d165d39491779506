"""Closed-loop load on socket-daemon versus a minimal asyncio server, measured in the same run.

Each of N concurrent clients (1, 16, 64) repeatedly connects, sends ``echo hello``,
half-closes, reads the reply to the end and closes; the next request starts
when the reply is in (closed loop). Servers run as separate processes; this
process generates the load. Prints replies/s, errors, p50/p99 latency and the
ratio socket-daemon / baseline. Also measured: a socket_comm Server with
``handler_threads = 0`` (handlers on the event loop: no thread hop), and the hop
to the handler thread itself. With --with-0.5.4 the lab-utils 0.5.4 Server
is measured too (slow: its p99 reaches seconds).

    .venv/bin/python bench/bench_socket_daemon.py [--duration 1.5] [--rounds 3] [--with-0.5.4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_support import exchange, free_port, wait_ready

MESSAGE = b"echo hello"
REPLY = b"hello"
LEVELS = (1, 16, 64)
INLINE = "handler_threads=0"  # socket_comm with handlers on the event loop (no hop)
ROOT = Path(__file__).resolve().parent.parent

BASELINE_SERVER = """
import asyncio, sys
async def handle(reader, writer):
    await reader.read()
    writer.write(b"hello")
    await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=128)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""

OLD_SERVER = """
import sys, logging
logging.disable(logging.CRITICAL)
from lab_utils.socket_comm import Server
class Echo(Server):
    def create_parser(self):
        super().create_parser()
        sp = self.sp.add_parser("echo", description="echo")
        sp.add_argument("text", nargs="*")
        sp.set_defaults(func=self.echo, which="echo")
    def echo(self):
        self.reply = " ".join(self.namespace.text)
server = Echo(pid_file_name=sys.argv[2], host="127.0.0.1", port=int(sys.argv[1]))
print("ready", flush=True)
server.start_daemon()
"""

INLINE_SERVER = """
import sys, logging
logging.disable(logging.CRITICAL)
from lab_utils_common.socket_comm import Server
class Echo(Server):
    handler_threads = 0   # handlers on the event loop thread: no thread hop per command
    def create_parser(self):
        super().create_parser()
        self.add_command("echo", self.echo, "echo").add_argument("text", nargs="*")
    def echo(self):
        self.reply = " ".join(self.namespace.text)
Echo(pid_file_name=sys.argv[2], host="127.0.0.1", port=int(sys.argv[1])).start_daemon()
"""


async def one_request(loop: asyncio.AbstractEventLoop, port: int) -> bool:
    return await exchange(loop, port, MESSAGE) == REPLY


async def closed_loop(port: int, clients: int, duration: float) -> dict:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + duration

    async def worker() -> None:
        nonlocal errors
        while time.monotonic() < end:
            start = time.perf_counter()
            try:
                ok = await asyncio.wait_for(one_request(loop, port), 30)
            except (TimeoutError, OSError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.monotonic() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {"rate": len(latencies) / elapsed, "errors": errors, "total": len(latencies) + errors,
            "p50": pct(0.50), "p99": pct(0.99), "mean": statistics.fmean(latencies) * 1000 if latencies else 0}


def start(kind: str, port: int, workdir: str) -> subprocess.Popen:
    python = sys.executable
    if kind == "socket-daemon":
        logging_ini = Path(workdir) / "logging.ini"
        logging_ini.write_text("[ConsoleLogger]\nactive = 1\nuse_coloured_output = 0\nlog_level = WARNING\n")
        cmd = [python, "-m", "socket_daemon", "--host", "127.0.0.1", "--port", str(port),
               "--pid-file", str(Path(workdir) / "daemon.pid"), "--logging-config", str(logging_ini)]
    elif kind == "asyncio baseline":
        cmd = [python, "-c", BASELINE_SERVER, str(port)]
    elif kind == INLINE:
        cmd = [python, "-c", INLINE_SERVER, str(port), str(Path(workdir) / "inline.pid")]
    else:
        cmd = [python, "-c", OLD_SERVER, str(port), str(Path(workdir) / "old.pid")]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    wait_ready(port, process)
    return process


def legacy_latency(port: int, requests: int = 200) -> dict:
    """Sequential requests the lab-utils 0.5.x way: send, no half-close, one recv(4096)."""
    latencies = []
    for _ in range(requests):
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.send(MESSAGE)
            reply = sock.recv(4096)
        if reply == REPLY:
            latencies.append(time.perf_counter() - start)
    latencies.sort()
    return {"ok": len(latencies), "p50": latencies[len(latencies) // 2] * 1000,
            "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000}


def merge(cells: list[dict]) -> dict:
    """The median round by rate (the machine is shared: rounds alternate between servers)."""
    return sorted(cells, key=lambda cell: cell["rate"])[len(cells) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=1.5, help="seconds per round (default 1.5)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per cell (default 3)")
    parser.add_argument("--with-0.5.4", dest="old", action="store_true", help="also measure lab-utils 0.5.4")
    args = parser.parse_args()
    kinds = ["socket-daemon", INLINE, "asyncio baseline"] + (["lab-utils 0.5.4"] if args.old else [])
    rounds: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        ports = {kind: free_port() for kind in kinds}
        processes = {kind: start(kind, ports[kind], workdir) for kind in kinds}
        try:
            for kind in kinds:
                asyncio.run(closed_loop(ports[kind], 4, 0.5))  # warm-up
            legacy = legacy_latency(ports["socket-daemon"])
            for clients in LEVELS:
                for _ in range(args.rounds):
                    for kind in kinds:
                        cell = asyncio.run(closed_loop(ports[kind], clients, args.duration))
                        rounds.setdefault((kind, clients), []).append(cell)
        finally:
            for process in processes.values():
                process.terminate()
                process.wait(10)
    results = {key: merge(cells) for key, cells in rounds.items()}
    print(f"closed loop, message {MESSAGE.decode()!r}, median of {args.rounds} alternating rounds of "
          f"{args.duration:g} s, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'server':18} {'clients':>7} {'replies/s':>10} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}")
    for kind in kinds:
        for clients in LEVELS:
            row = results[(kind, clients)]
            errors = sum(cell["errors"] for cell in rounds[(kind, clients)])
            base = results[("asyncio baseline", clients)]["rate"]
            print(f"{kind:18} {clients:7d} {row['rate']:10.0f} {errors:7d} {row['p50']:8.2f} "
                  f"{row['p99']:8.2f} {row['rate'] / base:6.2f}")
    print(f"0.5.x-style client (no half-close, one recv) against socket-daemon, {legacy['ok']}/200 "
          f"answered, one at a time: p50 {legacy['p50']:.1f} ms, p99 {legacy['p99']:.1f} ms")
    hop = measure_hop()
    print(f"hop to the handler thread and back (in-process Server, {hop['n']} sequential requests from "
          f"another process): network->handler p50 {hop['forward'][0]:.0f} us, p99 {hop['forward'][1]:.0f} us; "
          f"handler->network p50 {hop['back'][0]:.0f} us, p99 {hop['back'][1]:.0f} us")


HOP_CLIENT = """
import socket, sys
for _ in range(int(sys.argv[2])):
    c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    c.sendall(b"echo hello")
    c.shutdown(socket.SHUT_WR)
    while c.recv(4096):
        pass
    c.close()
"""


def measure_hop(requests: int = 2000) -> dict:
    """Time from queueing a command to its handler starting, and from its end to the reply going out."""
    import threading
    sys.path.insert(0, str(ROOT))
    from lab_utils_common.socket_comm import Server, command_runner

    forward: list[float] = []
    back: list[float] = []

    class Timed(command_runner.SerialRunner):
        def submit(self, job, done):
            queued = time.perf_counter()
            ended = []

            def timed_job():
                forward.append(time.perf_counter() - queued)
                result = job()
                ended.append(time.perf_counter())
                return result

            def timed_done(result):
                back.append(time.perf_counter() - ended[0])
                done(result)

            super().submit(timed_job, timed_done)

    class Echo(Server):
        def create_parser(self):
            super().create_parser()
            self.add_command("echo", self.echo, "echo").add_argument("text", nargs="*")

        def echo(self):
            self.reply = " ".join(self.namespace.text)

    with tempfile.TemporaryDirectory() as workdir:
        server = Echo(pid_file_name=str(Path(workdir) / "hop.pid"), host="127.0.0.1", port=0)
        original, command_runner.SerialRunner = command_runner.SerialRunner, Timed
        controller_module = sys.modules["lab_utils_common.socket_comm.controller"]
        controller_module.SerialRunner = Timed
        try:
            thread = threading.Thread(target=server.start_daemon, daemon=True)
            thread.start()
            server.ready.wait(20)
            subprocess.run([sys.executable, "-c", HOP_CLIENT, str(server.server_address[1]), str(requests)],
                           check=True)
            server.shutdown()
        finally:
            command_runner.SerialRunner = original
            controller_module.SerialRunner = original

    def p50_p99(values: list[float]) -> tuple[float, float]:
        values = sorted(values[len(values) // 10:])  # the first tenth warms up
        return values[len(values) // 2] * 1e6, values[int(0.99 * (len(values) - 1))] * 1e6

    return {"n": requests, "forward": p50_p99(forward), "back": p50_p99(back)}


if __name__ == "__main__":
    main()
