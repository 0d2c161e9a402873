"""What every web handler reaches: the NATS-backed client and the projector's views."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web
from nats.aio.client import Client as NATS

from projections.projector import Projector
from services.read import StoreReadiness
from services.settings import Settings
from ui.client import EngineClient


@dataclass(slots=True)
class Backend:
    nc: NATS
    client: EngineClient
    projector: Projector
    settings: Settings
    readiness: StoreReadiness
    started: float = field(default_factory=time.time)


BACKEND = web.AppKey("backend", Backend)
