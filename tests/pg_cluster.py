"""A throwaway PostgreSQL 15 cluster on 127.0.0.1: the tests' ``postgres_server`` and bench/.

Plain Python without pytest, so bench/bench_database.py can load this one file;
tests/conftest.py re-exports it and keeps the fixtures.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["PG_BIN", "PostgresServer", "free_port", "timescaledb_installed", "start_cluster"]

PG_BIN = Path(os.environ.get("LABUTILS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL 15 cluster (initdb + pg_ctl) on 127.0.0.1.

    The superuser ``user`` authenticates with ``password`` over TCP;
    ``passfile`` is a pgpass file holding it, as lab-utils' ``Database`` expects.
    """

    root: Path
    port: int
    user: str = "labadmin"
    password: str = "test-password-not-secret"
    host: str = "127.0.0.1"
    has_timescaledb: bool = False
    _run_as: Optional[pwd.struct_passwd] = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def passfile(self) -> Path:
        return self.root / "pgpass"

    def dsn(self, dbname: str = "postgres") -> str:
        return (f"host={self.host} port={self.port} user={self.user} "
                f"password={self.password} dbname={dbname}")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        def demote() -> None:  # initdb and postgres refuse to run as root
            if self._run_as is not None:
                os.setgid(self._run_as.pw_gid)
                os.setuid(self._run_as.pw_uid)

        return subprocess.run(args, check=check, capture_output=True, text=True,
                              preexec_fn=demote if self._run_as else None)

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self.passfile.write_text(f"{self.host}:{self.port}:*:{self.user}:{self.password}\n")
        self.passfile.chmod(0o600)
        if self._run_as is not None:
            for path in (self.root, pwfile):
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                  f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8")
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.root}'",
            "fsync = off",  # a throwaway server: durability across a machine crash is not tested
            "max_connections = 200",
        ]
        if self.has_timescaledb:
            settings += ["shared_preload_libraries = 'timescaledb'", "timescaledb.telemetry_level = off"]
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n".join(settings) + "\n")

    def start(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-l",
                  str(self.root / "server.log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop",
                  check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL through the psql client and return its unaligned output."""
        env = dict(os.environ, PGPASSWORD=self.password)
        done = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-h", self.host, "-p", str(self.port), "-U", self.user,
                               "-d", dbname, "-c", sql],
                              check=True, capture_output=True, text=True, env=env)
        return done.stdout.strip()


def timescaledb_installed() -> bool:
    """Whether the TimescaleDB extension is installed next to PostgreSQL 15."""
    sharedir = subprocess.run([str(PG_BIN / "pg_config"), "--sharedir"], capture_output=True,
                              text=True) if (PG_BIN / "pg_config").exists() else None
    share = Path(sharedir.stdout.strip()) if sharedir and sharedir.returncode == 0 \
        else Path("/usr/share/postgresql/15")
    return (share / "extension" / "timescaledb.control").exists()


def start_cluster(root: Path) -> PostgresServer:
    """Create and start a cluster in ``root`` on a free port, TimescaleDB preloaded when installed."""
    run_as = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    if run_as is not None:
        # initdb and postgres run as the postgres user: the cluster directory must be reachable
        for parent in [root, *root.parents]:
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o711)
    server = PostgresServer(root=root, port=free_port(), has_timescaledb=timescaledb_installed(),
                            _run_as=run_as)
    server.init()
    server.start()
    return server
