"""log-relay: alarm records over TCP -> durable spool -> e-mail (and Slack) digests.

Example::

    import asyncio
    from log_relay import LogRelay, RelaySettings

    async def main():
        relay = LogRelay(RelaySettings.from_config("relay.ini"))
        await relay.start()
        await relay.serve_forever()      # until relay.request_stop()

    asyncio.run(main())
"""

from log_relay.record_parser import ParsedRecord, RecordParser
from log_relay.relay import LogRelay
from log_relay.settings import RelaySettings
from log_relay.status import StatusReport, read_status

__all__ = ["LogRelay", "RelaySettings", "RecordParser", "ParsedRecord", "read_status", "StatusReport"]
