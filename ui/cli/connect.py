"""How the CLI reaches the engine: NATS as the client login, and the caller's API token on every command.

The token is `$PLAYBOOK_TOKEN`, else the local admin's that `playbook up` (the identity
service) wrote to `$PLAYBOOK_HOME/credentials/token`; the NATS login is the client's in
`$PLAYBOOK_HOME/credentials/nats-client.json` (or the user and password in `$NATS_URL`). `$NATS_URL`
may name several servers, separated by commas (a cluster's).
"""
from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from services.errors import AccessDenied, EngineUnavailable
from services.identity.credentials import TOKEN_FILE, read_secret

if TYPE_CHECKING:   # NATS and the client load only when a command talks to the engine
    from services.settings import Settings
    from ui.cli.wire import Connection
    from ui.client import EngineClient


def caller_credential(settings: Settings) -> str | None:
    """Who the CLI acts as: `$PLAYBOOK_TOKEN`, else the local admin's token `playbook up` wrote here."""
    return settings.token or read_secret(settings.home, TOKEN_FILE)


async def with_client(settings: Settings, work: Callable[[EngineClient], Awaitable[int]],
                      on_behalf_of: str | None = None) -> int:
    """`work` with a client of the engine: NATS as the client login, commands with the caller's token."""
    url = settings.engine_url()
    from ui.cli.lazy import without_aiohttp
    with without_aiohttp(settings):
        import nats

        from services.settings import connect_options
        from ui.client import EngineClient

    heard: list[Exception] = []

    async def quiet(err: Exception) -> None:
        heard.append(err)

    try:
        # A cluster's server that takes the connection but says nothing (frozen) is passed over sooner.
        nc = await nats.connect(**connect_options(url), connect_timeout=1 if "," in url else 3,
                                max_reconnect_attempts=2, error_cb=quiet, **settings.nats_login("client"))
    except Exception as err:  # noqa: BLE001 - any failure to connect means the same to a user
        raise _not_connected(url, [*heard, err]) from None
    try:
        return await work(EngineClient(nc, caller_credential(settings), on_behalf_of=on_behalf_of, door="cli"))
    finally:
        await nc.close()


def _not_connected(url: str, errors: list[Exception]) -> EngineUnavailable:
    """Why nats-py did not connect: a login the server refused (it then says only "no servers available"), or
    no server there. Never with the URL's password."""
    from services.settings import LOGIN_REFUSED_HINT, url_to_show
    refusal = next((str(e).removeprefix("nats: ").strip("'") for e in errors
                    if "authorization violation" in str(e).lower()), None)
    if refusal:
        return EngineUnavailable(f"NATS at {url_to_show(url)} refused the login ({refusal}): {LOGIN_REFUSED_HINT}")
    last = errors[-1]
    return EngineUnavailable(f"cannot reach NATS at {url_to_show(url)} ({last or type(last).__name__}): "
                             "is `playbook up` running?")


def plain_connection(settings: Settings) -> Connection | None:
    """The CLI's own connection (`ui.cli.wire`: no nats-py to import), as the client login; None where only
    nats-py connects (tls://, ws://)."""
    from ui.cli.wire import connect
    login = settings.nats_login("client")
    return connect(settings.engine_url(), login.get("user"), login.get("password"))


def caller_headers_of(args: argparse.Namespace, settings: Settings) -> dict[str, str]:
    """Who a command of the CLI comes from, as request headers; AccessDenied without a token."""
    from events.identity import caller_headers
    return caller_headers(_credential_to_steer(settings), getattr(args, "as_user", None), "cli")


def _credential_to_steer(settings: Settings) -> str:
    credential = caller_credential(settings)
    if credential is None:
        raise AccessDenied(f"no API token: set PLAYBOOK_TOKEN, or start the engine here with `playbook up` "
                           f"(it writes {settings.home / 'credentials' / TOKEN_FILE})", "unauthenticated")
    return credential


def steer(args: argparse.Namespace, settings: Settings, work: Callable[[EngineClient], Awaitable[int]]) -> int:
    """`work` that sends commands: it needs a token; `--as` acts on someone's behalf (admins only)."""
    _credential_to_steer(settings)
    return run(with_client(settings, work, getattr(args, "as_user", None)))


def read(settings: Settings, work: Callable[[EngineClient], Awaitable[int]]) -> int:
    """`work` that reads: `with_client` on the command's one event loop."""
    return run(with_client(settings, work))


def run(work: Coroutine[Any, Any, int]) -> int:
    """The command's one event loop (asyncio loads only for commands that talk to the engine)."""
    import asyncio
    return asyncio.run(work)
