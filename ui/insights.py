"""Asking the learning service what it learned: insights, a rebuild, its status and lag, over NATS.

Every door (CLI, HTTP API, and later the dashboard, MCP and `validate --insights`) asks
through this, so they all read the same answers and the same errors.
"""
from __future__ import annotations

from collections.abc import Callable


import msgspec
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError

from events.json_limits import stored_decoder
from events import subjects
from events.insights import Insights, InsightsRequest, LearningReply, LearningStatus, Rebuilt, Recommendation
from services.errors import EngineUnavailable
from services.learning.errors import LearningRefused

_reply: Callable[[bytes], LearningReply] = stored_decoder(LearningReply)   # an answer of the engine


class LearningClient:
    def __init__(self, nc: NATS, headers: dict[str, str] | None = None) -> None:
        self.nc, self.headers = nc, headers or None     # who asks: the caller's `Authorization` header

    async def insights(self, playbook: str | None = None, *, environment: str | None = None, after: int = 0,
                       wait: float = 10.0) -> Insights:
        """Everything learned that the caller may read, or one playbook's (in one environment: "" for its runs
        without one); with `after`, once learned up to that stream sequence (waiting up to `wait` seconds)."""
        request = InsightsRequest(playbook=playbook, environment=environment, after=after, wait=wait)
        reply = await self._ask(subjects.LEARNING_INSIGHTS, request, wait + 15.0)
        assert reply.insights is not None
        return reply.insights

    async def rebuild(self, timeout: float = 300.0) -> Rebuilt:
        reply = await self._ask(subjects.LEARNING_REBUILD, None, timeout)
        assert reply.rebuilt is not None
        return reply.rebuilt

    async def status(self, timeout: float = 5.0) -> LearningStatus:
        reply = await self._ask(subjects.LEARNING_STATUS, None, timeout)
        assert reply.status is not None
        return reply.status

    async def lag(self) -> int:
        """Events stored in the stream and not yet learned: what /metrics shows."""
        return (await self.status()).lag

    async def _ask(self, subject: str, body: msgspec.Struct | None, timeout: float) -> LearningReply:
        try:
            msg = await self.nc.request(subject, msgspec.json.encode(body) if body else b"", timeout=timeout,
                                        headers=self.headers)
        except (NoRespondersError, TimeoutError) as err:
            raise EngineUnavailable("the learning service did not answer: is `playbook up` (or "
                                    "`python -m services.learning`) running?") from err
        reply = _reply(msg.data)
        if reply.error is not None and reply.error.code == "unavailable":     # tokens cannot be checked just now
            raise EngineUnavailable(reply.error.message)
        if reply.error is not None:
            raise LearningRefused(reply.error.code, reply.error.message)
        return reply


def recommendations_for(insights: Insights, playbook: str) -> list[Recommendation]:
    """One playbook's recommendations with those of the targets its steps call, e.g. for `validate --insights`."""
    found = [r for p in insights.playbooks if p.playbook == playbook for r in p.recommendations]
    called = {s.target for p in insights.playbooks if p.playbook == playbook for s in p.steps if s.target}
    return found + [r for t in insights.targets if t.target in called for r in t.recommendations]
