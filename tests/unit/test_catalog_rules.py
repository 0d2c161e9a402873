"""The catalog's rules: a version never changes, the same text again is nothing new, versions and names
are what references can name."""
from __future__ import annotations

import pytest

from events.catalog import PlaybookPublished
from services.domain.catalog import (
    PlaybookVersions, check_name, evolve, parse_reference, publish, validation_of, version_to_publish,
)
from services.errors import CommandRejected, UnknownPlaybook
from services.playbook import validate_playbook
from tests.helpers import at

ONE, TWO = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def published(version: str, digest: str, actor: str = "alice", t: float = 0) -> PlaybookPublished:
    return PlaybookPublished(name="deploy", at=at(t), version=version, digest=digest, parsed=digest, actor=actor,
                             bytes=100, steps=2)


def catalog(*events: PlaybookPublished) -> PlaybookVersions:
    versions = PlaybookVersions(name="deploy")
    for seq, event in enumerate(events, 1):
        evolve(versions, event, seq)
    return versions


def test_a_new_version_is_recorded() -> None:
    assert publish(catalog(published("1.0", ONE)), published("1.1", TWO)) == [published("1.1", TWO)]


def test_publishing_the_same_text_as_the_same_version_again_is_nothing_new() -> None:
    assert publish(catalog(published("1.0", ONE)), published("1.0", ONE, actor="bob", t=60)) == []


def test_other_text_under_a_published_version_is_refused_saying_who_published_it() -> None:
    with pytest.raises(CommandRejected) as refused:
        publish(catalog(published("1.0", ONE)), published("1.0", TWO, actor="bob"))
    assert refused.value.code == "version_exists"
    assert "deploy@1.0 is already published with other content" in str(refused.value)
    assert f"({ONE}, by alice at 2026-01-01 12:00:00Z)" in str(refused.value)
    assert "publish the change as a new version" in str(refused.value)


def test_the_same_text_may_be_published_as_another_version() -> None:
    assert publish(catalog(published("1.0", ONE)), published("1.0.1", ONE)) == [published("1.0.1", ONE)]


def test_a_name_alone_means_its_latest_published_version() -> None:
    versions = catalog(published("2.0", TWO), published("1.5", ONE, t=60))
    assert versions.find() == published("1.5", ONE, t=60)        # published last, whatever its number
    assert versions.find("2.0") == published("2.0", TWO)
    assert versions.find("3.0") is None and PlaybookVersions(name="new").find() is None


@pytest.mark.parametrize("written, given, version", [
    ("1", "", "1"),                 # no `version:` at all: 1
    ("1.2.0", "", "1.2.0"),
    (2, "", "2"),                   # YAML numbers are read as written
    ("1", "2026.01-rc1", "2026.01-rc1"),
    ("1.2.0", "1.2.0", "1.2.0"),
])
def test_the_version_is_the_one_given_else_the_one_written(written, given, version) -> None:
    assert version_to_publish(written, given) == version


def test_a_given_version_that_contradicts_the_written_one_is_refused() -> None:
    with pytest.raises(CommandRejected, match="says `version: 1.2.0` but the publish asks for 1.3.0"):
        version_to_publish("1.2.0", "1.3.0")


@pytest.mark.parametrize("version", ["", "1 0", "v1/2", "1@2", "-1", "x" * 65])
def test_a_version_references_could_not_name_is_refused(version) -> None:
    with pytest.raises(CommandRejected, match="letters, digits"):
        version_to_publish(version or " ", "")


@pytest.mark.parametrize("name", ["deploy web", "deploy.web", "*", ">", "a" * 65, "-x", ""])
def test_a_playbook_name_that_is_no_catalog_name_cannot_be_published(name) -> None:
    with pytest.raises(CommandRejected, match="cannot be published"):
        check_name(name)


@pytest.mark.parametrize("reference, parsed", [
    ("deploy", ("deploy", None)), ("deploy@1.2.0", ("deploy", "1.2.0")), ("deploy_web-2@2026.1+b7", ("deploy_web-2",
                                                                                                   "2026.1+b7")),
])
def test_references_name_a_playbook_and_maybe_a_version(reference, parsed) -> None:
    assert parse_reference(reference) == parsed


@pytest.mark.parametrize("reference", ["deploy@", "@1", "pb.run.>", "de*", "deploy@1@2", "deploy@../x"])
def test_a_reference_that_names_nothing_is_unknown_and_never_a_wildcard(reference) -> None:
    with pytest.raises(UnknownPlaybook, match="write NAME or NAME@VERSION"):
        parse_reference(reference)


def test_the_validation_recorded_counts_by_severity_with_the_codes() -> None:
    text = "name: x\nsteps:\n  - {id: a, action: shell, args: {command: 'rm -rf /'}}\n"
    found = validation_of(validate_playbook(text))
    assert (found.errors, found.warnings, found.infos) == (1, 1, 1)
    assert found.codes == ["PB401", "PB501", "PB502"]
