"""Fixtures that start real servers for the tests: PostgreSQL, SMTP, HTTP, TCP peers, Docker.

Every server here is real, listens on 127.0.0.1 only, on a free port, and is
stopped when its scope ends. Sections are kept apart by a banner per server kind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

# Re-exported: tests import free_port (and the others) from here.
from pg_cluster import PG_BIN, PostgresServer, free_port, start_cluster


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Block until something accepts TCP connections on host:port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.02)


@pytest.fixture
def unused_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port()


# =========================================================================== PostgreSQL
# PostgresServer (a throwaway cluster) lives in tests/pg_cluster.py, shared with bench/.


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> Iterator[PostgresServer]:
    """A real PostgreSQL 15 for the whole session, with TimescaleDB preloaded when installed."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL 15 is not installed ({PG_BIN}/initdb missing): "
                    "apt-get install postgresql-15 (scripts/test does it)")
    root = tmp_path_factory.mktemp("postgres")
    server = start_cluster(root)
    try:
        yield server
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_database(postgres_server: PostgresServer, request) -> Iterator[str]:
    """A fresh, empty database on the session server; yields its name and drops it after."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    name = f"{name}_{os.getpid()}_{free_port()}"
    postgres_server.psql(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# =========================================================================== TimescaleDB
# Tests marked @pytest.mark.timescaledb run against a server with the extension: the session
# PostgreSQL when TimescaleDB is installed next to it, or the server named by the DSN in
# LABUTILS_TEST_TIMESCALEDB_DSN (a superuser, e.g. the timescale/timescaledb image). Otherwise
# they skip, saying why.

TIMESCALEDB_DSN_ENV = "LABUTILS_TEST_TIMESCALEDB_DSN"


@dataclass
class TimescaleServer:
    """Where TimescaleDB tests connect: host, port, superuser and password."""

    host: str
    port: int
    user: str
    password: str

    def dsn(self, dbname: str = "postgres") -> str:
        return (f"host={self.host} port={self.port} user={self.user} "
                f"password={self.password} dbname={dbname}")

    def execute(self, statement: str, dbname: str = "postgres") -> list:
        import psycopg2  # only the TimescaleDB section needs it at import time
        conn = psycopg2.connect(self.dsn(dbname), connect_timeout=10)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()


@pytest.fixture(scope="session")
def timescaledb_server(request) -> TimescaleServer:
    """A server with TimescaleDB (see the section comment), or skip the test saying why."""
    dsn = os.environ.get(TIMESCALEDB_DSN_ENV)
    if dsn:
        from psycopg2.extensions import parse_dsn
        parts = parse_dsn(dsn)
        server = TimescaleServer(parts.get("host", "127.0.0.1"), int(parts.get("port", 5432)),
                                 parts.get("user", "postgres"), parts.get("password", ""))
    else:
        pg: PostgresServer = request.getfixturevalue("postgres_server")
        if not pg.has_timescaledb:
            pytest.skip(f"TimescaleDB is not installed next to PostgreSQL 15 ({PG_BIN}: no "
                        f"timescaledb.control) and {TIMESCALEDB_DSN_ENV} is not set; see "
                        f"DEVELOPERS.md to install it, or point {TIMESCALEDB_DSN_ENV} at a server")
        server = TimescaleServer(pg.host, pg.port, pg.user, pg.password)
    rows = server.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    if not rows:
        pytest.fail(f"{TIMESCALEDB_DSN_ENV} names a server without the timescaledb extension")
    return server


@pytest.fixture(autouse=True)
def _timescaledb_marker(request) -> None:
    """Tests marked ``timescaledb`` skip (with the reason) when no server has the extension."""
    if request.node.get_closest_marker("timescaledb") is not None:
        request.getfixturevalue("timescaledb_server")


@pytest.fixture
def timescale_database(timescaledb_server: TimescaleServer, request) -> Iterator[str]:
    """A fresh database with the timescaledb extension installed; yields its name, drops it after."""
    name = "ts_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:45]
    name = f"{name}_{os.getpid()}_{free_port()}"
    timescaledb_server.execute(f'CREATE DATABASE "{name}"')
    try:
        timescaledb_server.execute("CREATE EXTENSION IF NOT EXISTS timescaledb", dbname=name)
        yield name
    finally:
        with contextlib.suppress(Exception):
            timescaledb_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# =========================================================================== Database and db-admin
# Database objects and a running db-admin daemon (the systems under test) on the servers above.


@pytest.fixture
def connect_db(postgres_server, pg_database) -> Iterator:
    """Factory: a connected ``Database`` on the fresh ``pg_database`` (plain PostgreSQL mode)."""
    from lab_utils_common.database import Database
    opened: list = []

    def factory(**overrides):
        settings = dict(host=postgres_server.host, port=postgres_server.port, database=pg_database,
                        user=postgres_server.user, passfile=str(postgres_server.passfile),
                        timescaledb=False)
        settings.update(overrides)
        db = Database(**settings)
        db.connect()
        opened.append(db)
        return db

    yield factory
    for db in opened:
        db.close()


@pytest.fixture
def db(connect_db):
    """A connected ``Database`` in plain PostgreSQL mode (``timescaledb = off``)."""
    return connect_db()


def _timescale_db(server: TimescaleServer, dbname: str):
    from lab_utils_common.database import Database
    return Database(host=server.host, port=server.port, database=dbname, user=server.user,
                    password=server.password, timescaledb=True)


@pytest.fixture
def ts_db(timescaledb_server, timescale_database) -> Iterator:
    """A connected ``Database`` in TimescaleDB mode on a fresh database with the extension."""
    db = _timescale_db(timescaledb_server, timescale_database)
    db.connect()
    yield db
    db.close()


class AdminUnderTest:
    """A running db-admin daemon, a client for it and a ``Database`` for assertions."""

    def __init__(self, admin, db) -> None:
        from lab_utils_common.socket_comm import Client
        self.admin = admin
        self.db = db
        host, port = admin.server_address
        self.client = Client(host=host, port=port, timeout=60)

    def send(self, message: str) -> str:
        return self.client.send_message(message)


@contextlib.contextmanager
def _running_admin(tmp_path: Path, make_database) -> Iterator[AdminUnderTest]:
    import threading
    from db_admin import DbAdmin
    admin = DbAdmin(host="127.0.0.1", port=0, pid_file_name=str(tmp_path / "db-admin.pid"),
                    database=make_database())
    admin.connect_database(wait=10)
    thread = threading.Thread(target=admin.start_daemon, name="db-admin-under-test")
    thread.start()
    check = make_database()
    try:
        if not admin.ready.wait(15):
            raise TimeoutError("db-admin did not start listening within 15 s")
        check.connect()
        yield AdminUnderTest(admin, check)
    finally:
        check.close()
        admin.shutdown()
        thread.join(30)


@pytest.fixture
def db_admin(tmp_path, postgres_server, pg_database) -> Iterator[AdminUnderTest]:
    """db-admin on plain PostgreSQL (timescaledb = off), database ``pg_database``, port chosen."""
    from lab_utils_common.database import Database

    def make():
        return Database(host=postgres_server.host, port=postgres_server.port, database=pg_database,
                        user=postgres_server.user, passfile=str(postgres_server.passfile),
                        timescaledb=False)

    with _running_admin(tmp_path, make) as admin:
        yield admin


@pytest.fixture
def ts_admin(tmp_path, timescaledb_server, timescale_database) -> Iterator[AdminUnderTest]:
    """db-admin in TimescaleDB mode on a fresh database with the extension."""
    with _running_admin(tmp_path, lambda: _timescale_db(timescaledb_server, timescale_database)) as admin:
        yield admin

# =========================================================================== SMTP, webhook, TCP line receiver
# A real aiosmtpd server with TLS certificates from a throwaway trustme CA, and a real local
# HTTP server for webhooks. Both record what they receive; tests wait on a condition.

import email
import email.policy
import logging
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class _Recorder:
    """A list that tests can wait on: ``wait_for(n)`` blocks until it holds n items."""

    what = "items"

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._items: list = []

    def _record(self, item: Any) -> None:
        with self._condition:
            self._items.append(item)
            self._condition.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list:
        """Block until at least ``count`` items arrived; return them all, or raise AssertionError."""
        with self._condition:
            if not self._condition.wait_for(lambda: len(self._items) >= count, timeout):
                raise AssertionError(
                    f"{self!r}: expected {count} {self.what} within {timeout} s, "
                    f"got {len(self._items)}: {self._items!r}"[:2000])
            return list(self._items)

    def wait_until(self, predicate: Callable[[list], bool], timeout: float = 10.0,
                   what: str = "condition") -> list:
        """Block until ``predicate(items)`` is true; return the items, or raise AssertionError."""
        with self._condition:
            if not self._condition.wait_for(lambda: predicate(self._items), timeout):
                raise AssertionError(f"{self!r}: {what} not met within {timeout} s; "
                                     f"{len(self._items)} {self.what} received")
            return list(self._items)


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """The test certificate authority; ``tls_ca.cert_pem.write_to_path(path)`` gives its PEM."""
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_ca_file(tls_ca: trustme.CA, tmp_path_factory) -> str:
    """Path of the test CA's certificate (PEM), what a client passes as its CA file."""
    path = tmp_path_factory.mktemp("tls-ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def tls_server_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A server-side TLS context with a certificate for 127.0.0.1 and localhost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def untrusted_server_context() -> ssl.SSLContext:
    """A server-side TLS context whose certificate comes from another CA (never verifies)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


class _DropLoginDataWarning(logging.Filter):
    """aiosmtpd logs a deprecation warning on every successful AUTH, through the root logger,
    where it would reach the handlers under test (configure_logging runs in this process)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_DropLoginDataWarning())


class _MailRecorder:
    """aiosmtpd handler: parses each DATA into an EmailMessage and records it."""

    def __init__(self, server: "SmtpServer") -> None:
        self._server = server

    async def handle_DATA(self, server, session, envelope) -> str:
        # SMTP carries CRLF line ends; tests compare with Python's "\n".
        raw = (envelope.original_content or envelope.content).replace(b"\r\n", b"\n")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self._server.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self._server._record(message)
        return "250 Message accepted for delivery"


class SmtpServer(_Recorder):
    """A real SMTP server on 127.0.0.1 (aiosmtpd) with TLS from the test CA.

    ``security``: ``starttls`` (STARTTLS required), ``tls`` (implicit TLS) or
    ``none``. With ``auth``, AUTH LOGIN/PLAIN with ``username``/``password`` is
    required (over TLS unless ``security`` is ``none``). ``messages`` holds the
    received :class:`EmailMessage` objects; ``stop()``/``start()`` keep the port.
    """

    what = "mails"
    host = "127.0.0.1"
    username = "lab-sender"
    password = "smtp-test-password-not-secret"

    def __init__(self, *, security: str, auth: bool, ca_file: str,
                 server_context: ssl.SSLContext) -> None:
        super().__init__()
        if security not in ("starttls", "tls", "none"):
            raise ValueError(f"security {security!r} is not starttls, tls or none")
        self.security = security
        self.auth = auth
        self.ca_file = ca_file
        self.port = free_port()
        self.envelopes: list = []
        self._server_context = server_context
        self._controller: Optional[Controller] = None

    @property
    def messages(self) -> list:
        with self._condition:
            return list(self._items)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (auth_data.login == self.username.encode()
              and auth_data.password == self.password.encode())
        return AuthResult(success=ok, handled=False)

    def start(self) -> None:
        if self._controller is not None:
            return
        kwargs: dict = {}
        if self.security == "starttls":
            kwargs.update(tls_context=self._server_context, require_starttls=True)
        elif self.security == "tls":
            kwargs.update(ssl_context=self._server_context)
        if self.auth:
            # aiosmtpd only counts STARTTLS as TLS for auth_require_tls; with implicit TLS the
            # whole connection is encrypted already, so the check is off there.
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=self.security == "starttls")
        controller = Controller(_MailRecorder(self), hostname=self.host, port=self.port,
                                server_hostname="smtp.test", **kwargs)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __repr__(self) -> str:
        return f"<SmtpServer {self.security} {self.host}:{self.port}>"


@pytest.fixture
def smtp_server_factory(tls_ca_file: str, tls_server_context: ssl.SSLContext,
                        untrusted_server_context: ssl.SSLContext) -> Iterator[Callable[..., SmtpServer]]:
    """Start SMTP servers: ``smtp_server_factory(security="tls", auth=True, trusted=True)``.

    ``trusted=False`` serves a certificate from another CA than ``.ca_file``.
    """
    servers: list[SmtpServer] = []

    def make(security: str = "starttls", auth: bool = True, trusted: bool = True) -> SmtpServer:
        server = SmtpServer(security=security, auth=auth, ca_file=tls_ca_file,
                            server_context=tls_server_context if trusted else untrusted_server_context)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_factory) -> SmtpServer:
    """A real SMTP server with STARTTLS required and AUTH required (see :class:`SmtpServer`)."""
    return smtp_server_factory("starttls", auth=True)


class WebhookServer(_Recorder):
    """A real HTTP server on 127.0.0.1 that records POSTed JSON bodies (a Slack-like webhook).

    ``url`` is the webhook address; ``bodies`` the decoded JSON bodies;
    ``requests`` (path, headers, body) tuples; set ``status`` to make it fail.
    """

    what = "webhook posts"
    host = "127.0.0.1"

    def __init__(self) -> None:
        super().__init__()
        self.status = 200
        self.requests: list = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status = recorder.status
                try:
                    body = json.loads(raw.decode("utf-8"))
                except ValueError:
                    body = raw
                # Recorded before replying: the client's next POST may be served by another
                # thread, and the order of arrival is what tests compare.
                recorder.requests.append((self.path, dict(self.headers), body))
                if status == 200:
                    recorder._record(body)
                reply = b"ok" if status == 200 else b"invalid_payload"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass  # keep the test output clean

        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://{self.host}:{self.port}/services/T000/B000/test-webhook"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="webhook-server")
        self._thread.start()

    @property
    def bodies(self) -> list:
        with self._condition:
            return list(self._items)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)

    def __repr__(self) -> str:
        return f"<WebhookServer {self.url}>"


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    """A real local HTTP server recording POSTed JSON (see :class:`WebhookServer`)."""
    server = WebhookServer()
    yield server
    server.stop()


class LineReceiver(_Recorder):
    """A real TCP server on 127.0.0.1 that records ``\\n``-terminated lines (an alarm receiver).

    ``lines`` holds the decoded lines without terminator, from all connections in
    arrival order; ``partial`` the unterminated rests found at a connection's end.
    ``stop()`` closes the listener and the connections at once (what was not read
    yet is lost, as with a crash); ``stop(drain=True)`` half-closes each
    connection instead (the sender sees EOF) and reads on until the sender closes
    its end, at most ``timeout`` s (a graceful restart). ``start()`` listens again
    on the same port.
    """

    what = "lines"
    host = "127.0.0.1"

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.partial: list = []
        self.connections = 0
        self._listener: Optional[socket.socket] = None
        self._threads: list = []
        self._peers: list = []

    @property
    def lines(self) -> list:
        with self._condition:
            return list(self._items)

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True,
                                  name="line-receiver-accept")
        thread.start()
        self._threads.append(thread)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                peer, _ = listener.accept()
            except OSError:
                return  # listener closed by stop()
            with self._condition:
                self.connections += 1
                self._peers.append(peer)
            thread = threading.Thread(target=self._read, args=(peer,), daemon=True,
                                      name="line-receiver-read")
            thread.start()
            self._threads.append(thread)

    def _read(self, peer: socket.socket) -> None:
        buffer = b""
        while True:
            try:
                chunk = peer.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                self._record(line.decode("utf-8"))
        if buffer:
            with self._condition:
                self.partial.append(buffer.decode("utf-8", "replace"))
        peer.close()

    def stop(self, drain: bool = False, timeout: float = 10.0) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            listener.close()
        with self._condition:
            peers, self._peers = self._peers, []
        threads, self._threads = self._threads, []
        if drain:
            for peer in peers:
                with contextlib.suppress(OSError):
                    peer.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + timeout
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        for peer in peers:  # the sender did not close in time: cut it off
            with contextlib.suppress(OSError):
                peer.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)

    def __repr__(self) -> str:
        return f"<LineReceiver {self.host}:{self.port}>"


@pytest.fixture
def line_receiver() -> Iterator[LineReceiver]:
    """A real TCP line receiver on 127.0.0.1 (see :class:`LineReceiver`), started."""
    receiver = LineReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


# =========================================================================== Docker
# Container tests (tests/stack/, marker `docker`) build the images and start the compose stack
# once per session under a unique project name, reach it only through ports published on
# 127.0.0.1 (ephemeral), and remove its containers, networks and volumes at the end. They skip
# only when no Docker engine answers. With scripts/build-offline-images' .build/offline.env,
# compose uses the images built without a registry (plain PostgreSQL instead of TimescaleDB).

REPO_ROOT = Path(__file__).resolve().parent.parent
LABUTILS_DOCKER_SOCKET = Path(os.environ.get("LABUTILS_DOCKER_DIR", "/var/lib/labutils-docker")) / "docker.sock"
OFFLINE_ENV_FILE = REPO_ROOT / ".build" / "offline.env"
STACK_PORTS = {  # service -> (container port, compose variable that publishes it)
    "timescaledb": (5432, "LABUTILS_PUBLISH_DATABASE"),
    "socket-daemon": (1507, "LABUTILS_PUBLISH_SOCKET_DAEMON"),
    "db-admin": (1508, "LABUTILS_PUBLISH_DB_ADMIN"),
    "log-relay": (9020, "LABUTILS_PUBLISH_LOG_RELAY"),
    "mail-sink": (8025, "LABUTILS_PUBLISH_MAIL_SINK"),
}
# Settings that make the stack react within a test's time scale.
STACK_TEST_OVERRIDE = REPO_ROOT / "tests" / "stack" / "compose.test.yaml"


def _docker_environment() -> None:
    """Point the docker SDK, compose and testcontainers at the engine (see docs/stack.md)."""
    if "DOCKER_HOST" not in os.environ and not Path("/var/run/docker.sock").exists() \
            and LABUTILS_DOCKER_SOCKET.exists():
        os.environ["DOCKER_HOST"] = f"unix://{LABUTILS_DOCKER_SOCKET}"  # scripts/docker-engine's
    # No registry: the reaper image cannot be pulled, so the tests clean up themselves; the CI
    # VM has a /.dockerenv file, which would make testcontainers look for the bridge gateway.
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    os.environ.setdefault("TC_HOST", "127.0.0.1")


def offline_settings() -> dict:
    """The variables scripts/build-offline-images wrote to .build/offline.env (empty if none)."""
    if not OFFLINE_ENV_FILE.exists():
        return {}
    pairs = (line.split("=", 1) for line in OFFLINE_ENV_FILE.read_text().splitlines()
             if "=" in line and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


@pytest.fixture(scope="session")
def offline_postgres_image(docker_client) -> str:
    """The name of the PostgreSQL stand-in image built by scripts/build-offline-images."""
    import docker.errors

    name = offline_settings().get("LABUTILS_TIMESCALEDB_IMAGE", "lab-utils/postgres:15-bookworm")
    try:
        docker_client.images.get(name)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {name} does not exist: build it with scripts/build-offline-images")
    return name


@pytest.fixture(scope="session")
def docker_client():
    """A docker SDK client on a reachable engine, or skip the test saying which engine was tried."""
    import docker  # the docker SDK; only the container tests need it

    _docker_environment()
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # DockerException, connection errors: all mean "no engine here"
        pytest.skip(f"no Docker engine reachable at {where} ({exc.__class__.__name__}); "
                    "start one with: eval \"$(scripts/docker-engine start)\"")
    try:
        yield client
    finally:
        client.close()


class LabStack:
    """The compose stack of the repository, started for the test session.

    Wraps testcontainers' ``DockerCompose`` (which runs ``docker compose up --build --wait``)
    and adds what the tests need: published ports, service stop/start/restart, and ``down``
    that keeps the volumes. Example::

        port = lab_stack.port("socket-daemon")
        lab_stack.restart("timescaledb")
    """

    def __init__(self, compose, docker_client, project: str, password: str) -> None:
        self.compose = compose
        self.docker = docker_client
        self.project = project
        self.db_password = password

    def _run(self, *args: str) -> None:
        self.compose._run_command(cmd=[*self.compose.compose_command_property, *args])

    def up(self) -> None:
        """``up --wait``: start what is missing and wait until every service is healthy."""
        self._run("up", "--wait")

    def up_services(self, *services: str) -> None:
        """``up -d SERVICE...``: create and start them (and what they depend on), no waiting."""
        self._run("up", "-d", *services)

    def down_keeping_volumes(self) -> None:
        """``down`` without ``--volumes``: containers and network go, named volumes stay."""
        self._run("down")

    def stop(self, service: str) -> None:
        self._run("stop", service)

    def start(self, service: str) -> None:
        """Start a stopped service and wait until it is healthy."""
        self._run("up", "--wait", "--no-deps", service)

    def restart(self, service: str) -> None:
        self._run("restart", service)

    def port(self, service: str) -> int:
        """The host port (on 127.0.0.1) published for the service's main port."""
        return int(self.compose.get_service_port(service, STACK_PORTS[service][0]))

    def container(self, service: str):
        """The docker SDK container of a running service."""
        found = self.docker.containers.list(all=True, filters={
            "label": [f"com.docker.compose.project={self.project}",
                      f"com.docker.compose.service={service}"]})
        if len(found) != 1:
            raise LookupError(f"{len(found)} containers for service {service!r} in {self.project!r}")
        return found[0]

    def logs(self, service: str) -> str:
        return self.container(service).logs().decode("utf-8", "replace")

    def wait_healthy(self, service: str, timeout: float = 60.0) -> None:
        """Block until the service's container reports healthy, or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            container = self.container(service)
            status = container.attrs["State"].get("Health", {}).get("Status")
            if status == "healthy":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{service} is {status!r} after {timeout} s:\n{self.logs(service)[-3000:]}")
            time.sleep(0.2)


@pytest.fixture(scope="session")
def lab_stack(docker_client, tmp_path_factory) -> Iterator[LabStack]:
    """The whole stack (profile dev: with the mail sink), healthy, for the session."""
    import secrets

    from testcontainers.compose import DockerCompose

    project = f"labutils-test-{os.getpid()}-{secrets.token_hex(3)}"
    root = tmp_path_factory.mktemp("stack")
    password = secrets.token_urlsafe(18)
    password_file = root / "db_password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o644)  # compose bind-mounts it: the containers' users must read it
    session_env = root / "session.env"
    session_env.write_text("\n".join([
        f"LABUTILS_STACK_NAME={project}",
        f"LABUTILS_DB_PASSWORD_FILE={password_file}",
        "LABUTILS_HEALTHCHECK_INTERVAL=1s",
        *(f"{variable}=127.0.0.1:" for _, variable in STACK_PORTS.values()),
    ]) + "\n")
    env_files = [str(OFFLINE_ENV_FILE)] if OFFLINE_ENV_FILE.exists() else []
    compose = DockerCompose(context=REPO_ROOT, compose_file_name=["compose.yaml", str(STACK_TEST_OVERRIDE)],
                            env_file=[*env_files, str(session_env)], profiles=["dev"],
                            build=True, wait=True)
    stack = LabStack(compose, docker_client, project, password)
    try:
        compose.start()
    except subprocess.CalledProcessError as exc:
        logs = subprocess.run([*compose.compose_command_property, "logs", "--no-color", "--tail", "40"],
                              cwd=REPO_ROOT, capture_output=True, text=True).stdout
        compose.stop(down=True)
        pytest.fail(f"the stack did not come up healthy: {exc.stderr.decode(errors='replace')}\n{logs}")
    try:
        yield stack
    finally:
        compose.stop(down=True)  # down --volumes: containers, network and named volumes


# =========================================================================== Log relay
# The relay in-process (its asyncio loop in a thread, real sockets and spool) for most tests,
# and as a real `python -m log_relay` subprocess where a test kills it. Digest waits are short.

import asyncio

RELAY_FAST_TIMING = {
    "group_wait": "0.2", "group_interval": "1.0", "retry_initial": "0.05", "retry_max": "0.4",
    "tail_wait": "0.1", "heartbeat_interval": "0.5", "drain_timeout": "5",
}


def relay_config_file(path: Path, smtp: "SmtpServer", *, spool: Path, port: Optional[int],
                      relay: Optional[dict] = None, extra: str = "") -> Path:
    """Write an INI file for log-relay: [Relay] (fast timing) and [MailHandler] for ``smtp``."""
    credentials = path.parent / (path.stem + "-smtp-credentials")
    credentials.write_text(f"{smtp.username}\n{smtp.password}\n")
    credentials.chmod(0o600)
    options = {"host": "127.0.0.1", "port": str(port), "spool_path": str(spool),
               **RELAY_FAST_TIMING, **(relay or {})}
    if port is None:  # let the relay take [AlarmLogger] port from the same file
        del options["port"]
    lines = ["[Relay]", *(f"{key} = {value}" for key, value in options.items()), "",
             "[MailHandler]", f"mail_host = {smtp.host}", f"port = {smtp.port}",
             f"security = {smtp.security}", f"ca_file = {smtp.ca_file}",
             f"credentials_file = {credentials}", "sender = relay@lab.test",
             "subject = lab alarm", "recipients =", "    oncall@lab.test", "    boss@lab.test", "",
             extra]
    path.write_text("\n".join(lines) + "\n")
    return path


class RelayRunner:
    """A LogRelay running in a background thread's event loop (real sockets, real spool)."""

    def __init__(self, settings) -> None:
        from log_relay.relay import LogRelay

        self.settings = settings
        self.relay = LogRelay(settings)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="log-relay-test")
        self._thread.start()
        if not self._started.wait(15):
            raise TimeoutError("log-relay did not start within 15 s")
        if self._error is not None:
            raise self._error
        self.port = self.relay.address[1]
        self.spool_path = settings.spool_path

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def run() -> None:
            try:
                await self.relay.start()
            except BaseException as exc:
                self._error = exc
                self._started.set()
                return
            self._started.set()
            await self.relay.serve_forever()

        self._loop.run_until_complete(run())
        self._loop.close()

    def stop(self, timeout: float = 20.0) -> None:
        """Drain and stop, as SIGTERM does."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.relay.request_stop)
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"log-relay did not stop within {timeout} s")

    def spool_count(self, table: str = "records", where: str = "1") -> int:
        from log_relay.spool import Spool

        spool = Spool.open(self.spool_path, readonly=True)
        try:
            return spool.count(where, table=table)
        finally:
            spool.close()

    def wait_spooled(self, count: int, timeout: float = 15.0) -> None:
        """Block until the spool holds at least ``count`` records."""
        wait_until(lambda: self.spool_count() >= count, timeout,
                   lambda: f"spool holds {self.spool_count()} records, expected {count}")

    def wait_delivered(self, records: int, timeout: float = 15.0) -> None:
        """Block until the spool holds ``records`` records and none is left to deliver."""
        self.wait_spooled(records, timeout)
        wait_until(lambda: self.spool_count("outbox") == 0, timeout,
                   lambda: f"outbox still holds {self.spool_count('outbox')} records")


def wait_until(condition: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> None:
    """Poll ``condition`` until true; raise AssertionError with ``describe()`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout} s: {describe()}")
        time.sleep(0.02)


@pytest.fixture
def relay_factory(tmp_path: Path, smtp_server) -> Iterator[Callable[..., RelayRunner]]:
    """Start in-process relays on a free port with a fresh spool, mailing to ``smtp_server``:
    ``relay_factory(group_wait="0.2", min_level="ERROR", extra_ini="[SlackLogger] ...")``."""
    from log_relay.settings import RelaySettings

    runners: list[RelayRunner] = []

    def make(extra_ini: str = "", smtp=None, spool: Optional[Path] = None, **relay: str) -> RelayRunner:
        config = relay_config_file(tmp_path / f"relay{len(runners)}.ini", smtp or smtp_server,
                                   spool=spool or tmp_path / "spool" / "relay.sqlite3",
                                   port=int(relay.pop("port", 0)), relay=relay, extra=extra_ini)
        runner = RelayRunner(RelaySettings.from_config(str(config), environ={}))
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.stop()


class RelayProcess:
    """``python -m log_relay --config FILE run`` as a real subprocess (for SIGKILL/SIGTERM tests)."""

    def __init__(self, config: Path, port: int) -> None:
        self.config = config
        self.port = port
        self.process: Optional[subprocess.Popen] = None
        self.log = config.with_suffix(".log")

    def start(self, timeout: float = 20.0) -> "RelayProcess":
        import sys

        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "log_relay", "--config", str(self.config), "run"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"log-relay exited with {self.process.returncode}:\n"
                                     f"{self.log.read_text()}")
            try:
                wait_for_port("127.0.0.1", self.port, timeout=0.2)
                return self
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def wait(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def relay_process_factory() -> Iterator[Callable[[Path, int], RelayProcess]]:
    """Make (not start) log-relay subprocesses; any still running are killed at the end."""
    made: list[RelayProcess] = []

    def make(config: Path, port: int) -> RelayProcess:
        made.append(RelayProcess(config, port))
        return made[-1]

    yield make
    for process in made:
        process.stop()


def send_to_relay(port: int, data: bytes) -> None:
    """Open a TCP connection to 127.0.0.1:port, send ``data``, close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)


# =========================================================================== socket_comm servers (room 2)
# In-process lab_utils_common.socket_comm servers on a thread (port 0, pid file in tmp_path), and
# the lab-utils 0.5.4 reference Server in a subprocess (its start_daemon needs the main thread).

OLD_LAB_UTILS_SERVER = """
import sys
from lab_utils.socket_comm import Server
class Echo(Server):
    def create_parser(self):
        super().create_parser()
        sp = self.sp.add_parser("echo", description="replies with its words")
        sp.add_argument("text", nargs="*")
        sp.set_defaults(func=self.echo, which="echo")
    def echo(self):
        self.reply = "|".join(self.namespace.text)
Echo(pid_file_name=sys.argv[2], host="127.0.0.1", port=int(sys.argv[1])).start_daemon()
"""


@dataclass
class RunningSocketServer:
    """A socket_comm Server running start_daemon() on a thread; ``send`` talks to it."""

    server: object
    thread: object

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def client(self, **kwargs):
        from lab_utils_common.socket_comm import Client
        kwargs.setdefault("timeout", 20)
        return Client(host="127.0.0.1", port=self.port, **kwargs)

    def send(self, message: str, **kwargs) -> str:
        return self.client(**kwargs).send_message(message)

    def stop(self) -> None:
        self.server.shutdown(wait=False)
        self.thread.join(20)
        assert not self.thread.is_alive(), "the server thread did not stop"


@pytest.fixture
def socket_server_factory(tmp_path, monkeypatch):
    """start(cls=Server, settings={attr: value}, **constructor kwargs) -> RunningSocketServer.

    ``settings`` are set on the instance before start_daemon (timeouts, limits). Servers
    still running at the end are shut down. LABUTILS_SERVER_* variables of the caller's
    environment are removed so they cannot change the tests.
    """
    import threading

    for name in list(os.environ):
        if name.startswith(("LABUTILS_SERVER_", "LABUTILS_CLIENT_")):
            monkeypatch.delenv(name)
    running: list[RunningSocketServer] = []

    def start(cls=None, settings: Optional[dict] = None, **kwargs) -> RunningSocketServer:
        from lab_utils_common.socket_comm import Server
        cls = cls or Server
        kwargs.setdefault("pid_file_name", str(tmp_path / f"server{len(running)}.pid"))
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", 0)
        server = cls(**kwargs)
        for name, value in (settings or {}).items():
            setattr(server, name, value)
        thread = threading.Thread(target=server.start_daemon, name="socket-server", daemon=True)
        thread.start()
        if not server.ready.wait(20):
            raise TimeoutError(f"{cls.__name__} did not start listening within 20 s")
        running.append(RunningSocketServer(server, thread))
        return running[-1]

    yield start
    for item in running:
        if item.thread.is_alive():
            item.stop()


@pytest.fixture(scope="module")
def old_lab_utils_server(tmp_path_factory) -> Iterator[int]:
    """The lab-utils 0.5.4 Server (with an ``echo`` command joining words by '|'); yields its port."""
    import sys
    root = tmp_path_factory.mktemp("old-server")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", OLD_LAB_UTILS_SERVER, str(port), str(root / "old.pid")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port)
        yield port
    finally:
        process.kill()
        process.wait(10)


# =========================================================================== Shared test doubles (room 6)
# What several test files built alike: an echo daemon in the 0.5.x subclassing style, a logger
# of their own for handler tests, handlers that keep their errors instead of printing them.

from lab_utils_common.socket_comm import Server as _Server  # noqa: E402


class EchoServer(_Server):
    """``echo WORDS...`` replies with the words joined by ``|`` (written the 0.5.x way)."""

    def create_parser(self):
        super().create_parser()
        sp = self.sp.add_parser("echo", description="replies with its words")
        sp.add_argument("text", nargs="*")
        sp.set_defaults(func=self.echo, which="echo")

    def echo(self):
        self.reply = "|".join(self.namespace.text)


class KeepsHandlerErrors:
    """Mixin for a logging handler: ``handleError`` keeps the exception in ``errors`` (not stderr).

    ``class RecordingSMTPHandler(KeepsHandlerErrors, TlsSMTPHandler): pass``
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.errors: list = []

    def handleError(self, record) -> None:  # noqa: N802 - logging's name
        import sys
        self.errors.append(sys.exc_info()[1])


@pytest.fixture
def isolated_logger() -> Iterator[Callable[[str], Any]]:
    """Factory: ``isolated_logger(name)`` -> a DEBUG logger that does not propagate to the root;
    its handlers are closed and removed at the end."""
    from lab_utils_common.custom_logging import getLogger
    made: list = []

    def make(name: str):
        log = getLogger(name)
        log.propagate = False
        log.setLevel(logging.DEBUG)
        made.append(log)
        return log

    yield make
    for log in made:
        for handler in log.handlers:
            handler.close()
        log.handlers.clear()
