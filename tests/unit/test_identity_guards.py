"""Failed sign-ins limited per source, one-time sign-in codes, and secrets on disk only their owner reads."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from services.errors import PlaybookError, Unauthenticated
from services.identity.credentials import credentials_dir, read_secret, write_secret
from services.identity.limiter import FailureLimiter
from services.identity.signin import SignInCodes, sign_in_link


def test_a_source_may_fail_a_burst_then_waits_for_its_budget_to_refill() -> None:
    limiter = FailureLimiter(burst=3, rate=1.0)     # one more try per second
    assert [limiter.failed("10.0.0.9", 0.0) for _ in range(3)] == [False, False, True]
    assert limiter.wait("10.0.0.9", 0.0) == pytest.approx(1.0)
    assert limiter.wait("10.0.0.9", 0.5) == pytest.approx(0.5)
    assert limiter.wait("10.0.0.9", 1.0) == 0.0
    assert limiter.wait("10.0.0.7", 0.0) == 0.0     # another source is not affected


def test_failures_after_the_budget_is_spent_keep_the_source_waiting() -> None:
    limiter = FailureLimiter(burst=2, rate=0.1)
    for now in (0.0, 0.0, 1.0, 2.0):
        limiter.failed("attacker", now)
    assert limiter.wait("attacker", 2.0) > 9


def test_the_table_of_sources_is_bounded_and_forgets_the_least_recent() -> None:
    limiter = FailureLimiter(burst=1, rate=0.01, max_sources=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(limiter._buckets) == 100
    assert limiter.wait("10.0.0.0", 0.0) == 0.0     # forgotten
    assert limiter.wait("10.0.3.231", 0.0) > 0      # the latest is remembered


def test_a_sign_in_code_is_good_once() -> None:
    codes = SignInCodes(ttl=60)
    code = codes.issue("pbt_credential", now=0.0)
    assert len(code) >= 22                          # 128 bits
    assert codes.redeem(code, now=10.0) == "pbt_credential"
    with pytest.raises(Unauthenticated, match="unknown or was already used"):
        codes.redeem(code, now=11.0)


def test_a_sign_in_code_expires_and_is_spent_even_then() -> None:
    codes = SignInCodes(ttl=60)
    code = codes.issue("pbt_credential", now=0.0)
    with pytest.raises(Unauthenticated, match="expired"):
        codes.redeem(code, now=60.0)
    with pytest.raises(Unauthenticated, match="unknown"):
        codes.redeem(code, now=0.0)


def test_sign_in_codes_are_bounded_and_kept_only_as_hashes() -> None:
    codes = SignInCodes(ttl=60, max_codes=3)
    issued = [codes.issue(f"c{i}", now=0.0) for i in range(5)]
    assert len(codes._codes) == 3 and not any(code in codes._codes for code in issued)
    with pytest.raises(Unauthenticated):
        codes.redeem(issued[0], now=1.0)            # the oldest made room
    assert codes.redeem(issued[4], now=1.0) == "c4"
    with pytest.raises(Unauthenticated):
        codes.redeem("x" * 10_000, now=1.0)


def test_the_sign_in_link_carries_the_code_in_the_fragment_never_sent_to_a_server() -> None:
    assert sign_in_link("http://127.0.0.1:8080/", "a-b_c") == "http://127.0.0.1:8080/#code=a-b_c"


def test_secrets_are_written_owner_only_in_an_owner_only_directory(tmp_path: Path) -> None:
    path = write_secret(tmp_path, "token", "pbt_x\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(credentials_dir(tmp_path).stat().st_mode) == 0o700
    assert read_secret(tmp_path, "token") == "pbt_x"
    write_secret(tmp_path, "token", "pbt_y\n")      # replaced whole
    assert read_secret(tmp_path, "token") == "pbt_y"
    assert [p.name for p in credentials_dir(tmp_path).iterdir()] == ["token"]   # no temporary left behind
    assert read_secret(tmp_path, "absent") is None


def test_a_secret_file_opened_up_to_others_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = write_secret(tmp_path, "token", "pbt_x")
    os.chmod(path, 0o644)
    with pytest.raises(PlaybookError, match=r"open to other users \(mode 0644\); run `chmod 600"):
        read_secret(tmp_path, "token")
