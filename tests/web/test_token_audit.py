"""Who was issued a token with which grants, whose was revoked, who signed in and out: in the audit, for admins,
never with a secret. They were only in `playbook token list --all --inactive`."""
from __future__ import annotations

import aiohttp
import pytest

from events.identity import caller_headers
from tests.helpers import person, until, web_replica
from ui.identity_client import IdentityClient

pytestmark = pytest.mark.integration

TOKEN_ACTIONS = ("token_create", "sign_in", "sign_out", "token_revoke")


async def test_tokens_issued_and_revoked_and_sign_ins_are_in_the_audit_for_admins_only(engine, settings) -> None:
    admin = engine.caller.credential
    assert admin is not None
    sam = await person(engine, "sam", "operator:deploy-*@staging")
    vic = await person(engine, "vic", "viewer")
    sam_token = sam.caller.credential
    assert sam_token is not None
    async with web_replica(settings) as web, aiohttp.ClientSession() as http:
        async with http.post(f"{web.url}/api/session", json={"token": sam_token}) as signed_in:
            session = signed_in.cookies["pb_session"].value
        async with http.delete(f"{web.url}/api/session", cookies={"pb_session": session},
                               headers={"Origin": web.url}) as signed_out:
            assert signed_out.status == 200
        await IdentityClient(engine.nc, admin).revoke(sam_token.split("_")[1], reason="left the team")

        async def trail(credential: str) -> list[dict]:
            async with http.get(f"{web.url}/api/audit?limit=50", headers=caller_headers(credential)) as answer:
                assert answer.status == 200
                return [e for e in await answer.json() if e["action"] in TOKEN_ACTIONS]

        async def sams() -> list[dict]:
            entries = [e for e in await trail(admin) if "sam" in e["detail"] or e["actor"] == "sam"]
            return entries if len(entries) == 4 else []

        entries = await until(sams, what="sam's token acts in the audit")
        newest_first = [(e["action"], e["actor"]) for e in entries]
        assert newest_first == [("token_revoke", "admin"), ("sign_out", "sam"), ("sign_in", "sam"),
                                ("token_create", "admin")]
        revoked, _, _, issued = (e["detail"] for e in entries)
        assert "to sam: operator:deploy-*@staging; until " in issued
        assert revoked.endswith("\"sam's token\" of sam: left the team")
        assert await trail(vic.caller.credential) == []          # a viewer reads no identity records
        async with http.get(f"{web.url}/api/audit?limit=50", headers=caller_headers(admin)) as answer:
            assert sam_token.split("_")[2] not in await answer.text()
