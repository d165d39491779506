"""Fixtures that start real servers, one module per kind in tests/fixtures/, loaded as plugins.

Every server there is real, listens on 127.0.0.1 only, on a free port, and is stopped when its
scope ends. Tests import helpers from the module that defines them (``tests.fixtures.ports``).
"""

pytest_plugins = [
    "tests.fixtures.ports",
    "tests.fixtures.postgres",
    "tests.fixtures.smtp",
    "tests.fixtures.webhook",
    "tests.fixtures.tcp_peers",
    "tests.fixtures.docker_stack",
    "tests.fixtures.relay",
]
