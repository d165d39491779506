# Every image of the lab-utils stack, one target each (build context: the repository root):
#   docker build --target socket-daemon -t lab-utils/socket-daemon .
#   docker build --target db-admin      -t lab-utils/db-admin .
#   docker build --target log-relay     -t lab-utils/log-relay .
#   docker build --target mail-sink     -t lab-utils/mail-sink .      (development only)
#   docker build --target instrument-example -t lab-utils/instrument-example .   (profile example)
# compose.yaml builds them the same way (build.target). Build argument LABUTILS_PYTHON_BASE_IMAGE:
# any Debian-based image with python3 >= 3.11 and its venv module (without a registry:
# scripts/build-offline-images' lab-utils/python:3.11-bookworm). Behind a TLS-intercepting proxy:
# put its CA certificates (*.crt) in images/extra-ca-certs/.
#
# The stages share what they have in common (base -> lab-utils -> one stage per daemon), so the
# three service images share every layer but their last ones: one copy on disk, one build.
# The build steps themselves are one script: images/python/install-lab-utils.
ARG LABUTILS_PYTHON_BASE_IMAGE=python:3.11-slim-bookworm

# --------------------------------------------------------------------------- base
FROM ${LABUTILS_PYTHON_BASE_IMAGE} AS base
ENV PATH=/opt/lab-utils/bin:$PATH \
    VIRTUAL_ENV=/opt/lab-utils \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY images/python/install-lab-utils /usr/local/sbin/install-lab-utils
COPY images/extra-ca-certs/ /usr/local/share/ca-certificates/lab-utils-extra/
RUN install-lab-utils system

# --------------------------------------------------------------------------- lab-utils (shared)
FROM base AS lab-utils
# Dependencies before code: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml /src/pyproject.toml
RUN install-lab-utils dependencies
# Not README.md: a documentation edit must not rebuild the code layer (install-lab-utils code).
COPY LICENSE /src/
COPY lab_utils_common /src/lab_utils_common
COPY services /src/services
RUN install-lab-utils code
WORKDIR /var/lib/lab-utils
# lab-utils-client inside a container talks to its own daemon: `docker compose exec db-admin
# lab-utils-client status`. compose adds LABUTILS_CLIENT_TOKEN_FILE (the daemon's token secret).
ENV LABUTILS_CLIENT_HOST=127.0.0.1

# --------------------------------------------------------------------------- socket-daemon
# The lab command daemon (docs/socket-daemon.md), port 1507; named values on a volume.
FROM lab-utils AS socket-daemon
RUN install-lab-utils data-dir /var/lib/socket-daemon
USER labutils
ENV LABUTILS_SERVER_HOST=0.0.0.0 \
    LABUTILS_SERVER_PORT=1507 \
    LABUTILS_CLIENT_PORT=1507 \
    LABUTILS_SOCKET_DAEMON_VALUES_FILE=/var/lib/socket-daemon/values.json
VOLUME /var/lib/socket-daemon
EXPOSE 1507
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["lab-utils-client", "--timeout", "4", "status"]
# Exec form: the daemon is PID 1 (or tini's child under compose's init: true) and gets SIGTERM.
CMD ["socket-daemon"]

# --------------------------------------------------------------------------- db-admin
# Database commands over TCP (docs/db-admin.md), port 1508. The database password comes from a
# file (LABUTILS_DATABASE_PASSWORD_FILE, the compose secret), never from the environment.
FROM lab-utils AS db-admin
USER labutils
ENV LABUTILS_SERVER_HOST=0.0.0.0 \
    LABUTILS_SERVER_PORT=1508 \
    LABUTILS_CLIENT_PORT=1508
EXPOSE 1508
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 \
    CMD ["lab-utils-client", "--timeout", "4", "status"]
CMD ["db-admin"]

# --------------------------------------------------------------------------- log-relay
# Receives the daemons' alarm records on 9020, emails digests; spool on a volume
# (docs/log-relay.md). SIGTERM drains and stops cleanly.
FROM lab-utils AS log-relay
RUN install-lab-utils data-dir /var/lib/log-relay
USER labutils
ENV LABUTILS_RELAY_HOST=0.0.0.0 \
    LABUTILS_RELAY_PORT=9020 \
    LABUTILS_RELAY_SPOOL_PATH=/var/lib/log-relay/spool.sqlite3
VOLUME /var/lib/log-relay
EXPOSE 9020
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["log-relay", "status"]
CMD ["log-relay"]

# --------------------------------------------------------------------------- instrument-example
# The reference 0.5.x application (examples/, docs/porting-from-0.5.md), ported as a lab would:
# only its import lines changed. Its simulated instrument runs in the same container (a pty).
FROM lab-utils AS instrument-example
# pyserial: the example talks to its instrument as lab apps do (a test extra, not a library dependency)
RUN install-lab-utils packages "pyserial>=3.5"
COPY examples/instrument /opt/instrument
RUN sed -i -E 's/^(\s*(from|import)\s+)lab_utils\./\1lab_utils_common./' /opt/instrument/*.py \
    && chmod 755 /opt/instrument/container-start.sh
USER labutils
ENV LABUTILS_SERVER_HOST=0.0.0.0 \
    LABUTILS_SERVER_PORT=1509 \
    LABUTILS_CLIENT_PORT=1509
EXPOSE 1509
# The project's client, as in the other daemons' images (cli.py would alarm while the daemon starts)
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 \
    CMD ["lab-utils-client", "--timeout", "4", "status"]
CMD ["/opt/instrument/container-start.sh"]

# --------------------------------------------------------------------------- mail-sink
# Development only (compose.override.yml): catches log-relay's emails, shows them over HTTP
# (images/mail-sink/mail_sink.py). Never for production: it forwards nothing.
FROM base AS mail-sink
RUN install-lab-utils packages "aiosmtpd>=1.4" \
    && install-lab-utils data-dir /var/spool/mail-sink
COPY images/mail-sink/mail_sink.py /opt/mail-sink/mail_sink.py
USER labutils
WORKDIR /var/lib/lab-utils
VOLUME /var/spool/mail-sink
EXPOSE 1025 8025
HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "/opt/mail-sink/mail_sink.py", "--check"]
CMD ["python3", "/opt/mail-sink/mail_sink.py"]
