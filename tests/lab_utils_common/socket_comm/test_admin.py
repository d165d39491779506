"""Admin commands and actions: refused without a token unless explicitly allowed."""

import logging

from lab_utils_common.socket_comm import Server
from lab_utils_common.socket_comm.admin import alarm_level, existing_logger


class Plant(Server):
    admin_commands = Server.admin_commands | {"drain"}

    def create_parser(self):
        super().create_parser()
        self.add_command("drain", self.drain, "drains the tank")
        self.add_command("mute", self.mute, "mutes alarms").add_argument("level")

    def drain(self):
        self.reply = "drained"

    def mute(self):
        if logging.getLevelName(self.namespace.level) > alarm_level():
            self.require_admin(f"'mute {self.namespace.level}'")
        self.reply = f"muted at {self.namespace.level}"


def test_subclass_admin_commands_and_require_admin(socket_server_factory):
    closed = socket_server_factory(Plant)
    assert closed.send("drain").startswith("Error! 'drain' is an admin command, refused")
    assert closed.send("mute INFO") == "muted at INFO"  # below the alarm level: harmless
    assert closed.send("mute CRITICAL").startswith("Error! 'mute CRITICAL' is an admin command, refused")
    opened = socket_server_factory(Plant, allow_unauthenticated_admin=True)
    assert opened.send("drain") == "drained"
    assert opened.send("mute CRITICAL") == "muted at CRITICAL"


def test_existing_logger_creates_none():
    assert existing_logger(None) is logging.getLogger()
    assert existing_logger("root") is logging.getLogger()
    assert existing_logger("no-such-logger-x") is None
    assert "no-such-logger-x" not in logging.Logger.manager.loggerDict
    made = logging.getLogger("test-admin-existing")
    assert existing_logger("test-admin-existing") is made
