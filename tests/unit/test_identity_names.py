"""Principal names: one spelling per person, and no look-alikes."""
from __future__ import annotations

import pytest

from services.identity.names import InvalidName, is_normal, normalise_name


@pytest.mark.parametrize(("typed", "name"), [
    ("alice", "alice"),
    ("Alice", "alice"),
    ("  BOB  ", "bob"),
    ("ａｌｉｃｅ", "alice"),                 # fullwidth letters are the same name (NFKC)
    ("deploy-bot@ci.example", "deploy-bot@ci.example"),
    ("Straße", "strasse"),                  # case-folding, not lower-casing
    ("\u212aelvin", "kelvin"),              # KELVIN SIGN folds to k
])
def test_names_are_normalised_to_one_spelling(typed: str, name: str) -> None:
    assert normalise_name(typed) == name


@pytest.mark.parametrize("look_alike", [
    "\u0430lice",        # Cyrillic a
    "b\u043eb",          # Cyrillic o
    "alic\u0435",        # Cyrillic e
    "\u0251lice",        # Latin alpha
])
def test_look_alikes_from_other_scripts_are_refused(look_alike: str) -> None:
    with pytest.raises(InvalidName, match="other scripts are refused so that no name can imitate another"):
        normalise_name(look_alike)


@pytest.mark.parametrize("bad", ["", "-alice", "al ice", "alice\u200b", "a" * 65, "al/ice", "ali\nce"])
def test_names_outside_the_alphabet_are_refused_with_what_to_write(bad: str) -> None:
    with pytest.raises(InvalidName, match="valid name"):
        normalise_name(bad)


def test_the_engines_own_markers_cannot_be_principals() -> None:
    for reserved in ("system", "Anonymous"):
        with pytest.raises(InvalidName, match="reserved"):
            normalise_name(reserved)


def test_a_directory_entry_must_already_be_canonical() -> None:
    assert is_normal("alice") and not is_normal("Alice") and not is_normal("\u0430lice")
