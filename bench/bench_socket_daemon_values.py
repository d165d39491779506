"""Cost of one ``set`` on socket-daemon with few and with many values stored, in the same run.

Starts a socket-daemon process per store size, with a values file seeded through the JSON
migration (so the old format's cost is measurable too: ``--json`` times the rewrite-everything
JSON store of earlier versions, in this process, on the same disk). Prints p50/p99 of ``set``
round trips per store size and the ratio to the smallest store.

    .venv/bin/python bench/bench_socket_daemon_values.py [--sizes 10,100000] [--value-size 1000] [--sets 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_support import free_port

ROOT = Path(__file__).resolve().parent.parent


def request(port: int, message: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(message)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        return reply


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return samples[len(samples) // 2] * 1000, samples[min(len(samples) - 1, int(0.99 * len(samples)))] * 1000


def measure_daemon(workdir: Path, count: int, value_size: int, sets: int) -> tuple[float, float]:
    values_file = workdir / f"values-{count}.json"
    values_file.write_text(json.dumps({f"v{i:07d}": "x" * value_size for i in range(count)}))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABUTILS_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "socket_daemon", "--host", "127.0.0.1", "--port", str(port),
         "--pid-file", str(workdir / f"d{count}.pid"), "--values-file", str(values_file),
         "--max-values-size", str(2 * count * (value_size + 16) + 1_000_000)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                request(port, b"status")
                break
            except OSError as exc:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("socket-daemon did not start") from exc
                time.sleep(0.05)
        latencies = []
        value = b"y" * value_size
        for index in range(sets):
            start = time.perf_counter()
            reply = request(port, b"set new%d " % (index % 50) + value)
            latencies.append(time.perf_counter() - start)
            assert reply.startswith(b"new"), reply[:200]
        return percentiles(latencies)
    finally:
        process.terminate()
        process.wait(30)


def measure_json(workdir: Path, count: int, value_size: int, sets: int) -> tuple[float, float]:
    """The store of earlier versions: the whole JSON file rewritten and fsynced per set."""
    values = {f"v{i:07d}": "x" * value_size for i in range(count)}
    path = workdir / f"old-{count}.json"
    latencies = []
    for index in range(sets):
        start = time.perf_counter()
        values[f"new{index % 50}"] = "y" * value_size
        with open(f"{path}.tmp", "w", encoding="utf-8") as handle:
            json.dump(values, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(f"{path}.tmp", path)
        latencies.append(time.perf_counter() - start)
    return percentiles(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100000", help="values stored, comma-separated (10,100000)")
    parser.add_argument("--value-size", type=int, default=1000, help="bytes per value (1000)")
    parser.add_argument("--sets", type=int, default=200, help="set requests per store size (200)")
    parser.add_argument("--json", action="store_true", help="also time the JSON store of earlier versions")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(dir=ROOT) as workdir:  # the disk the repository is on, not tmpfs
        rows = [("socket-daemon (SQLite)", count, *measure_daemon(Path(workdir), count, args.value_size, args.sets))
                for count in sizes]
        if args.json:
            rows += [("JSON rewrite (before)", count,
                      *measure_json(Path(workdir), count, args.value_size, min(args.sets, 20)))
                     for count in sizes]
    print(f"set round trips, values of {args.value_size} bytes, {args.sets} sets per size, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'store':24} {'values':>8} {'MiB':>7} {'p50 ms':>8} {'p99 ms':>8} {'p50 ratio':>9}")
    for store, count, p50, p99 in rows:
        base = next(row[2] for row in rows if row[0] == store)
        print(f"{store:24} {count:8d} {count * args.value_size / 2**20:7.1f} {p50:8.2f} {p99:8.2f} "
              f"{p50 / base:9.2f}")


if __name__ == "__main__":
    main()
