"""A NATS URL as said to people (an error, a log): its password masked, everything else as given."""
from __future__ import annotations

import pytest

from services.settings import url_to_show


@pytest.mark.parametrize(("given", "shown"), [
    ("nats://pb-client:s3cret@127.0.0.1:4222", "nats://pb-client:***@127.0.0.1:4222"),
    ("nats://a:p1@h1:4222,nats://a:p2@h2:4222", "nats://a:***@h1:4222,nats://a:***@h2:4222"),
    ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
    ("nats://s3cret-token@127.0.0.1:4222", "nats://***@127.0.0.1:4222"),
    ("tls://u:p%40ss@nats.example.com:4222", "tls://u:***@nats.example.com:4222"),
])
def test_a_password_in_a_nats_url_is_never_shown(given: str, shown: str) -> None:
    assert url_to_show(given) == shown
