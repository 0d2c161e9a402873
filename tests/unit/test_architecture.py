"""The layers of docs/architecture.md, checked on every module's imports (read with `ast`, nothing imported).

contract (events) <- language (services.playbook) <- rules (services.domain) <- services
<- views (projections) <- doors (ui) <- root (app). A module imports its own layer and
those below; process edges (entry points) also import the root.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("events", "services", "projections", "ui", "app", "bench")

# Lowest first; a module belongs to the layer of its longest matching prefix.
LAYERS: dict[str, int] = {
    "events": 0,                                        # the contract
    "services.errors": 1, "services.hosts": 1,          # the language: errors, host patterns, log text,
    "services.log_text": 1, "services.lazy_names": 1,   # and packages whose names load when asked
    "services.playbook": 1,                             # the playbook language itself
    "services.domain": 2,                               # the rules: folds and decisions
    "services": 3,                                      # I/O: store, repository, consumers, services
    "projections": 4,                                   # views folded from events
    "ui": 5,                                            # doors: CLI, web
    "app": 6, "bench": 6,                               # the composition root, and tools on top
}
NAMES = ["contract", "language", "rules", "services", "views", "doors", "root"]
# Read by other services too: identity's vocabulary and guard, which every service that answers
# callers names (the guard itself is handed in by the root).
SHARED = ("services.identity.authority", "services.identity.principal",
          "services.identity.names", "services.identity.guard")
SERVICE_PACKAGES = ("services.run", "services.executor", "services.approval", "services.resilience",
                    "services.identity", "services.learning")
# Views and doors know the engine only through these (`services.fold`: the part of `services.read` a
# reader without nats-py needs; and what an identity client needs: grant syntax,
# sealed replies, the local credential files; what a door that checks callers is handed: the identity, its
# guard, sessions and sign-in codes; the learning service's refusal; stopping tasks for good).
PUBLIC = ("services.read", "services.fold", "services.playbook", "services.errors", "services.log_text",
          "services.settings", "services.tasks", "services.identity.authority", "services.identity.sealing",
          "services.identity.credentials", "services.identity.setup", "services.identity.guard",
          "services.identity.principal", "services.identity.names", "services.identity.sessions",
          "services.identity.signin", "services.identity.limiter", "services.learning.errors")
PURE_LAYERS = 2                                         # contract, language and rules do no I/O
IO_MODULES = ("nats", "aiohttp", "aiohttp_sse", "prometheus_client", "asyncio", "subprocess", "socket", "os",
              "random", "time", "pathlib", "services.store")
CLOCK_CALLS = ("now", "utcnow", "today")
# Where the environment may be read: process edges, and what reads variables of its own.
ENVIRONMENT_READERS = {
    "services.secrets.source": "the secret source reads PLAYBOOK_SECRET_* (and what ${env.*} may see) when asked",
    "services.executor.processes": "without settings given, the step process rules default to the engine's",
}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    file: str          # as the repository names it, for messages
    tree: ast.Module

    @property
    def layer(self) -> int:
        return layer_of(self.name)

    @property
    def is_edge(self) -> bool:
        """An entry point: reads the environment once and may call the root."""
        return (self.name.endswith("__main__") or self.name == "ui.cli.main"
                or layer_of(self.name) == LAYERS["app"])

    def imports(self) -> Iterator[tuple[int, str]]:
        package = self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield node.lineno, alias.name
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
                yield node.lineno, base
                for alias in node.names:   # `from services import settings` names a module too
                    yield node.lineno, f"{base}.{alias.name}"


def layer_of(name: str) -> int:
    best = max((prefix for prefix in LAYERS if name == prefix or name.startswith(prefix + ".")), key=len, default="")
    return LAYERS.get(best, -1)


def own(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def modules(root: Path = ROOT) -> list[Module]:
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found.append(Module(name, path, str(path.relative_to(root)), ast.parse(path.read_text(), str(path))))
    return found


def upward_imports(mods: list[Module]) -> list[str]:
    wrong = []
    for m in mods:
        for line, name in m.imports():
            if own(name) and layer_of(name) > m.layer and not (m.is_edge and layer_of(name) == LAYERS["app"]):
                wrong.append(f"{m.file}:{line}: {NAMES[m.layer]} imports {NAMES[layer_of(name)]} ({name})")
    return wrong


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_no_module_imports_a_layer_above_its_own() -> None:
    wrong = upward_imports(modules())
    assert not wrong, "\n".join(wrong)


def test_service_packages_do_not_import_each_other() -> None:
    wrong = [f"{m.file}:{line}: {name}"
             for m in modules() if not m.is_edge
             for package in SERVICE_PACKAGES if within(m.name, package)
             for line, name in m.imports()
             if any(within(name, other) for other in SERVICE_PACKAGES if other != package)
             and not any(within(name, shared) for shared in SHARED)]
    assert not wrong, "\n".join(wrong)


def test_views_and_doors_know_the_engine_only_through_its_public_modules() -> None:
    wrong = [f"{m.file}:{line}: {name}"
             for m in modules() if m.layer in (LAYERS["projections"], LAYERS["ui"]) and not m.is_edge
             for line, name in m.imports()
             if within(name, "services") and name != "services" and not any(within(name, p) for p in PUBLIC)]
    assert not wrong, "\n".join(wrong)


def test_the_contract_the_language_and_the_rules_do_no_io_and_read_no_clock() -> None:
    wrong = []
    for m in modules():
        if m.layer > PURE_LAYERS:
            continue
        wrong += [f"{m.file}:{line}: imports {name}" for line, name in m.imports()
                  if any(within(name, io) for io in IO_MODULES)]
        wrong += [f"{m.file}:{node.lineno}: calls .{node.func.attr}()" for node in ast.walk(m.tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in CLOCK_CALLS]
    assert not wrong, "\n".join(wrong)


def test_only_process_edges_read_the_environment() -> None:
    wrong = [f"{m.file}:{node.lineno}" for m in modules()
             if not m.is_edge and m.name not in ENVIRONMENT_READERS
             for node in ast.walk(m.tree)
             if (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb")
                 and isinstance(node.value, ast.Name) and node.value.id == "os")
             or (isinstance(node, ast.ImportFrom) and node.module == "os"
                 and any(a.name in ("environ", "getenv") for a in node.names))]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_an_upward_import_and_a_relative_one(tmp_path: Path) -> None:
    (tmp_path / "services" / "domain").mkdir(parents=True)
    (tmp_path / "services" / "domain" / "sneaky.py").write_text("from services.store import EventStore\n")
    (tmp_path / "services" / "domain" / "relative.py").write_text("from ..run import service\n")
    found = upward_imports(modules(tmp_path))
    assert [line.split(": ", 1)[1] for line in found] == [
        "rules imports services (services.run)", "rules imports services (services.run.service)",
        "rules imports services (services.store)", "rules imports services (services.store.EventStore)"]


def test_the_language_knows_exactly_the_actions_the_executor_runs() -> None:
    """The language defines the actions (`services/playbook/actions.py`); the executor runs each of them."""
    from services.executor.actions import ACTIONS
    from services.playbook.validate import DEFAULT_ACTIONS
    assert set(DEFAULT_ACTIONS) == set(ACTIONS)
