"""Alarm handler: lab-utils 0.5.4's NonPickledSocketHandler against lab_utils_common's.

Two figures, each measured for both handlers in the same run, on 127.0.0.1:
- records delivered when the receiver restarts mid-stream (graceful close, back in ~0.3 s);
- time an application thread spends in one logging call (median and 99th percentile).

Run: .venv/bin/python bench/bench_alarm_handler.py   (about 15 s)
"""

from __future__ import annotations

import logging
import socket
import statistics
import threading
import time

import lab_utils.custom_logging as legacy

from lab_utils_common.custom_logging import NonPickledSocketHandler

RECORDS = 3000
RESTART_AT = 1000


class Receiver:
    """Counts newline-terminated lines, or raw records for the unterminated 0.5.4 stream."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lock = threading.Lock()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.listener = None
        self.peers = []

    def start(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(8)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener) -> None:
        while True:
            try:
                peer, _ = listener.accept()
            except OSError:
                return
            self.peers.append(peer)
            threading.Thread(target=self._read, args=(peer,), daemon=True).start()

    def _read(self, peer) -> None:
        while True:
            try:
                chunk = peer.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def stop(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for peer in self.peers:
            try:
                peer.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            peer.close()
        self.peers = []

    def count(self, marker: bytes) -> int:
        with self.lock:
            return self.data.count(marker)


def restart_run(make_handler) -> tuple[int, float]:
    receiver = Receiver()
    receiver.start()
    handler = make_handler(receiver.port)
    logger = logging.getLogger(f"bench-{id(handler)}")
    logger.propagate = False
    logger.addHandler(handler)
    started = time.monotonic()
    for i in range(RECORDS):
        if i == RESTART_AT:
            deadline = time.monotonic() + 5
            while receiver.count(b"--message {") < RESTART_AT * 0.9 and time.monotonic() < deadline:
                time.sleep(0.01)
            receiver.stop()
            restart = threading.Timer(0.3, receiver.start)
            restart.start()
        logger.error("record %d", i)
        time.sleep(0.0003)  # a producer at a few thousand records/s
    restart.join()
    deadline = time.monotonic() + 10
    while receiver.count(b"--message {") < RECORDS and time.monotonic() < deadline:
        handler.flush() if isinstance(handler, NonPickledSocketHandler) else None
        time.sleep(0.05)
    delivered = len({int(part.split(b"}", 1)[0]) for part in receiver.data.split(b"--message {record ")[1:]})
    elapsed = time.monotonic() - started
    handler.close()
    receiver.stop()
    return delivered, elapsed


def latency_run(make_handler) -> tuple[float, float]:
    receiver = Receiver()
    receiver.start()
    handler = make_handler(receiver.port)
    logger = logging.getLogger(f"bench-lat-{id(handler)}")
    logger.propagate = False
    logger.addHandler(handler)
    samples = []
    for i in range(5000):
        t0 = time.perf_counter()
        logger.error("latency %d", i)
        samples.append(time.perf_counter() - t0)
    handler.close()
    receiver.stop()
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99)] * 1e6


def legacy_handler(port: int) -> logging.Handler:
    handler = legacy.NonPickledSocketHandler("127.0.0.1", port)
    handler.setFormatter(logging.Formatter(
        "{%(name)s} --date {%(asctime)s} --level {%(levelname)s} --app {%(name)s} --module "
        "{%(module)s} --function {%(funcName)s} --message {%(message)s}", "%Y-%m-%d %H:%M:%S"))
    return handler


def new_handler(port: int) -> logging.Handler:
    return NonPickledSocketHandler("127.0.0.1", port, retry_start=0.05, retry_max=0.5)


def main() -> None:
    rows = []
    for name, make in (("lab-utils 0.5.4", legacy_handler), ("lab_utils_common", new_handler)):
        delivered, elapsed = restart_run(make)
        median, p99 = latency_run(make)
        rows.append((name, delivered, elapsed, median, p99))
    print(f"{'handler':<18} {'delivered (restart)':>20} {'run s':>7} {'emit median us':>15} {'emit p99 us':>12}")
    for name, delivered, elapsed, median, p99 in rows:
        print(f"{name:<18} {f'{delivered}/{RECORDS}':>20} {elapsed:7.2f} {median:15.1f} {p99:12.1f}")


if __name__ == "__main__":
    main()
