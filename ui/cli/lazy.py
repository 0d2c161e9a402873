"""Handlers imported when their command runs, so reading the CLI's arguments loads no NATS, YAML or rules."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from services.settings import Settings



class Handler(Protocol):
    def __call__(self, args: argparse.Namespace, settings: Settings, /) -> int: ...


class Lazy:
    """A command's handler, imported when the command runs: `playbook --help` loads no NATS, YAML or rules."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = f"ui.cli.{module}", name

    def __call__(self, args: argparse.Namespace, settings: Settings) -> int:
        with without_aiohttp(settings):
            handler: Handler = getattr(importlib.import_module(self.module), self.name)
        return handler(args, settings)


@contextlib.contextmanager
def without_aiohttp(settings: Settings) -> Iterator[None]:
    """nats-py imports aiohttp, a third of the CLI's start, for ws:// URLs only: hide it while nats-py loads."""
    if "aiohttp" in sys.modules or (settings.nats_url or "").startswith(("ws://", "wss://")):
        yield
        return
    sys.modules["aiohttp"] = None  # type: ignore[assignment]  # `import aiohttp` raises ImportError meanwhile
    try:
        yield
    finally:
        del sys.modules["aiohttp"]
