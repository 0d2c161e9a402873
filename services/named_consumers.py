"""A JetStream context whose consumers always have names: those it makes unnamed (ordered ones) get a fresh one.

NATS users other than the engine may create consumers only in the named form
(`CONSUMER.CREATE.<stream>.<name>`): the unnamed form takes the name from the request's body, so a
reader allowed it could rewrite an engine consumer (services/identity/nats_users.py). nats-py makes an
ordered consumer unnamed, and again each time it resets one (a gap, a missed heartbeat): here each of
those creates takes a name of its own, never reused, so the web server's views and token registry
follow their streams under the web's login as under the engine's.
"""
from __future__ import annotations

from typing import Any

from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, ConsumerInfo
from nats.js.client import JetStreamContext
from nats.js.manager import JetStreamManager
from nats.nuid import NUID

PREFIX = "pbr_"     # a reader's own: no engine consumer is named so
_NUID = NUID()


class _NamingManager(JetStreamManager):
    async def add_consumer(self, stream: str, config: ConsumerConfig | None = None, timeout: float | None = None,
                           **params: Any) -> ConsumerInfo:
        config = config or ConsumerConfig()
        if not config.durable_name and (config.name is None or config.name.startswith(PREFIX)):
            config.name = PREFIX + _NUID.next().decode()    # a reset's create takes a new name too
        return await super().add_consumer(stream, config, timeout, **params)


class _NamingContext(JetStreamContext):
    @property
    def _jsm(self) -> JetStreamManager:      # what subscribe and an ordered consumer's reset create through
        return _NamingManager(conn=self._nc, prefix=self._prefix, timeout=self._timeout)


def named_jetstream(nc: NATS, **options: Any) -> JetStreamContext:
    """`nc.jetstream(**options)`, but every consumer it makes without a durable name is named `pbr_<nuid>`."""
    return _NamingContext(nc, **options)
