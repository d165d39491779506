"""What the benchmarks share: a free port on 127.0.0.1, waiting for a server to listen, one exchange."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 30.0, name: str = "server") -> None:
    """Block until ``process`` accepts connections on ``port``; raise if it exits or never listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


async def exchange(loop: asyncio.AbstractEventLoop, port: int, message: bytes) -> bytes:
    """One request as this project's Client makes it: connect, send, half-close, read to EOF."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, message)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                break
            reply += chunk
        return reply
    finally:
        sock.close()
