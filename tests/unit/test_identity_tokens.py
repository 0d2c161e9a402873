"""API tokens: the credential, its stored hash, a token's life, and the decisions that change it."""
from __future__ import annotations


import pytest

from events.identity import CreateToken, Grant, RevokeToken, TokenCreated, TokenRevoked, TokenUsed
from services.errors import CommandRejected, Unauthenticated
from services.identity.principal import Acting, Principal
from services.identity.sealing import new_seal, seal, unseal
from services.identity.tokens import (
    create, credential, evolve, hash_secret, new_secret, new_token_id, parse_credential, revoke, secret_matches,
)
from tests.helpers import at

ROOT = Acting(Principal(name="root"))


def test_a_credential_names_its_record_and_carries_256_random_bits() -> None:
    token_id, secret = new_token_id(), new_secret()
    text = credential(token_id, secret)
    assert text.startswith("pbt_") and parse_credential(text) == (token_id, secret)
    assert len(secret) == 43                      # 32 bytes, base64url
    assert new_secret() != secret and new_token_id() != token_id


@pytest.mark.parametrize("text", ["", "pbt_", "Bearer pbt_x", "pbt_0123456789abcdef_short",
                                  "pbt_0123456789ABCDEF_" + "a" * 43, "x" * 10_000])
def test_anything_else_is_not_a_token(text: str) -> None:
    with pytest.raises(Unauthenticated, match="not a Playbook token"):
        parse_credential(text)


def test_only_the_hash_is_kept_and_it_matches_only_its_secret() -> None:
    secret = new_secret()
    stored = hash_secret(secret)
    assert secret not in stored and len(stored) == 64
    assert secret_matches(secret, stored)
    assert not secret_matches(new_secret(), stored)


def test_a_token_is_created_for_a_normalised_owner_with_its_expiry_and_the_actor() -> None:
    cmd = CreateToken(name="ci deploys", owner="Deploy-Bot", kind="agent", expires_in_seconds=3600,
                      grants=(Grant(role="operator", playbooks=("deploy-*",)),) * 2)
    [created] = create(None, cmd, token_id="0123456789abcdef", secret_hash="h", by=ROOT, at=at(0))
    assert created == TokenCreated(at=at(0), token_id="0123456789abcdef", name="ci deploys", owner="deploy-bot",
                                   kind="agent", grants=(Grant(role="operator", playbooks=("deploy-*",)),),
                                   secret_hash="h", expires_at=at(3600), actor="root")


def test_an_admin_acting_for_someone_is_recorded_as_both() -> None:
    cmd = CreateToken(name="t", owner="bob", expires_in_seconds=None)
    by = Acting(Principal(name="root"), on_behalf_of="alice")
    [created] = create(None, cmd, token_id="0123456789abcdef", secret_hash="h", by=by, at=at(0))
    assert (created.actor, created.on_behalf_of, created.expires_at) == ("root", "alice", None)


def test_a_look_alike_owner_or_an_unprintable_name_is_rejected() -> None:
    with pytest.raises(CommandRejected, match="other scripts are refused"):
        create(None, CreateToken(name="t", owner="\u0430lice"), token_id="0123456789abcdef", secret_hash="h",
               by=ROOT, at=at(0))
    with pytest.raises(CommandRejected, match="printable"):
        create(None, CreateToken(name="t\x1b[2J", owner="alice"), token_id="0123456789abcdef", secret_hash="h",
               by=ROOT, at=at(0))


def test_an_expiry_past_the_calendar_is_rejected_with_a_sentence() -> None:
    with pytest.raises(CommandRejected, match="beyond the calendar; give a shorter one, or never"):
        create(None, CreateToken(name="t", owner="bob", expires_in_seconds=99999999 * 86400.0),
               token_id="0123456789abcdef", secret_hash="h", by=ROOT, at=at(0))


def test_a_token_lives_active_then_expired_or_revoked_and_remembers_its_last_use() -> None:
    created = TokenCreated(at=at(0), token_id="t1", name="n", owner="alice", secret_hash="h", actor="root",
                           expires_at=at(100))
    record = evolve(None, created, 1)
    assert record is not None and record.status(at(99)) == "active" and record.status(at(100)) == "expired"
    evolve(record, TokenUsed(at=at(50), token_id="t1"), 2)
    evolve(record, TokenUsed(at=at(40), token_id="t1"), 3)      # a late, older use does not go back in time
    assert record.last_used_at == at(50) and record.version == 3
    evolve(record, TokenRevoked(at=at(60), token_id="t1", actor="root", reason="leaked"), 4)
    info = record.info(at(61))
    assert (info.status, info.revoked_by, info.revoked_at, info.created_by) == ("revoked", "root", at(60), "root")
    assert not hasattr(info, "secret_hash")


def test_revoking_twice_changes_nothing_and_an_unknown_token_says_how_to_find_them() -> None:
    record = evolve(None, TokenCreated(at=at(0), token_id="t1", name="n", owner="a", secret_hash="h", actor="r"), 1)
    [revoked] = revoke(record, RevokeToken(token_id="t1", reason="rotated"), by=ROOT, at=at(5))
    evolve(record, revoked, 2)
    assert revoke(record, RevokeToken(token_id="t1"), by=ROOT, at=at(6)) == []
    with pytest.raises(CommandRejected, match="no token with id 'nope'; `playbook token list` shows them"):
        revoke(None, RevokeToken(token_id="nope"), by=ROOT, at=at(6))


def test_a_taken_id_is_never_reissued() -> None:
    record = evolve(None, TokenCreated(at=at(0), token_id="t1", name="n", owner="a", secret_hash="h", actor="r"), 1)
    with pytest.raises(CommandRejected, match="taken"):
        create(record, CreateToken(name="x", owner="b"), token_id="t1", secret_hash="h2", by=ROOT, at=at(1))


def test_a_sealed_secret_opens_only_with_its_own_key() -> None:
    key, other = new_seal(), new_seal()
    secret = credential(new_token_id(), new_secret())
    sealed = seal(key, secret)
    assert secret not in sealed and unseal(key, sealed) == secret
    assert unseal(other, sealed) != secret
