"""`playbook publish FILE...` and `playbook playbooks [NAME | show REF | diff NAME V1 V2]`: the playbook catalog.

Imported when one of them runs (ui/cli/main.py defines their arguments)."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from events.catalog import PlaybookPublished
from events.commands import Rejection, Reply
from services.errors import TooLarge
from services.settings import Settings
from ui.catalog_client import CatalogClient, Published, version_json
from ui.cli.common import read_playbook
from ui.cli.connect import steer, with_client
from ui.cli.exits import DENIED_CODES, EXIT_DENIED, EXIT_INVALID
from ui.cli.render import table
from ui.cli.terminal import shown
from ui.client import EngineClient

EXIT_OF_CODE = {"version_exists": 1, "unavailable": 4, **dict.fromkeys(DENIED_CODES, EXIT_DENIED)}  # else invalid, 2


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    if args.version and len(args.files) > 1:
        print("playbook publish: --version names the version of one file; publish files one by one", file=sys.stderr)
        return EXIT_INVALID
    texts = [read_playbook(name) for name in args.files]

    async def work(client: EngineClient) -> int:
        catalog, worst = CatalogClient(client), 0
        for path, text in texts:
            try:
                answer = await catalog.publish(text, version=args.version, source=str(path))
            except TooLarge as err:     # found before sending: a refusal of this file, as the engine's are
                answer = Reply(accepted=False, error=Rejection(code="too_large", message=str(err)))
            if isinstance(answer, Published):
                _show_published(answer, args.json)
            else:
                _show_refusal(path, answer)
                worst = max(worst, EXIT_OF_CODE.get(answer.error.code if answer.error else "", EXIT_INVALID))
        return worst

    return steer(args, settings, work)


def cmd_playbooks(args: argparse.Namespace, settings: Settings) -> int:
    words = args.words
    if len(words) > 1 and not ((words[0] == "show" and len(words) == 2) or (words[0] == "diff" and len(words) == 4)):
        print("playbook playbooks: give NAME, `show NAME[@VERSION]` or `diff NAME V1 V2`", file=sys.stderr)
        return EXIT_INVALID

    async def work(client: EngineClient) -> int:
        catalog = CatalogClient(client)
        if len(words) == 4:
            print(await catalog.diff(words[1], words[2], words[3]), end="")
            return 0
        if len(words) == 2:
            print(await catalog.text(words[1]), end="")
            return 0
        if words:
            return _show_versions(words[0], await catalog.versions(words[0]), args.json)
        return _show_catalog(await catalog.latest(), args.json)

    return asyncio.run(with_client(settings, work))


def _show_published(answer: Published, as_json: bool) -> None:
    v = answer.version
    if as_json:
        print(json.dumps({**version_json(v), "new": answer.new}))
        return
    said = "published" if answer.new else "already published:"
    warned = f", {_validation(v)}" if v.validation.codes else ""
    print(f"{said} {v.name}@{v.version} {v.digest} ({v.steps} steps, {v.bytes} bytes{warned})")


def _show_refusal(path: Path, reply: Reply) -> None:
    error = reply.error
    assert error is not None
    for detail in error.details:
        place = ":".join(str(detail[k]) for k in ("file", "line", "column") if detail.get(k) is not None)
        print(f"{place}: {detail.get('severity', '')} {detail.get('code', '')} {detail.get('message', '')}".strip(),
              file=sys.stderr)
    print(f"{path}: not published ({error.code}): {error.message}", file=sys.stderr)


def _show_catalog(latest: list[tuple[PlaybookPublished, list[str]]], as_json: bool) -> int:
    if as_json:
        print(json.dumps([{**version_json(v), "versions": versions} for v, versions in latest]))
        return 0
    if not latest:
        print("the catalog is empty: `playbook publish FILE` adds a playbook")
        return 0
    rows = [("NAME", "LATEST", "VERSIONS", "STEPS", "PUBLISHED", "BY", "DESCRIPTION")]
    rows += [(v.name, v.version, str(len(versions)), str(v.steps), f"{v.at:%Y-%m-%d %H:%M}", v.author,
              shown(v.description.splitlines()[0][:60]) if v.description else "") for v, versions in latest]
    print("\n".join(table(rows)))
    return 0


def _show_versions(name: str, versions: list[PlaybookPublished], as_json: bool) -> int:
    if as_json:
        print(json.dumps([version_json(v) for v in reversed(versions)]))
        return 0 if versions else EXIT_INVALID       # as `show`, `diff` and `run` of an unknown name
    if not versions:
        print(f"no playbook {name!r} in the catalog; `playbook playbooks` lists them", file=sys.stderr)
        return EXIT_INVALID
    rows = [("VERSION", "DIGEST", "STEPS", "PUBLISHED", "BY", "VALIDATION")]
    rows += [(v.version, v.digest[:19], str(v.steps), f"{v.at:%Y-%m-%d %H:%M:%S}", v.author, _validation(v))
             for v in reversed(versions)]
    print("\n".join(table(rows)))
    return 0


def _validation(v: PlaybookPublished) -> str:
    found = v.validation
    counts = [f"{n} {kind}" for n, kind in ((found.errors, "security errors"), (found.warnings, "warnings"),
                                             (found.infos, "infos")) if n]
    return f"{', '.join(counts)} ({', '.join(found.codes)})" if counts else "clean"
