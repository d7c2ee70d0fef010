"""The package's shape: no import cycle anywhere in ``supervisor/`` or
``bench/`` (imports inside functions and under TYPE_CHECKING count too), no
module so large that a reader cannot hold it, a top level that reads as a
table of contents, and one name per module (two ``control.py`` make every
stack trace ambiguous). The tests' own shape: each test file in ``tests/logic/``
(runs entirely inside the test process) or ``tests/processes/`` (starts real
processes: the supervisor, PostgreSQL, a subprocess, a fork)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "supervisor"
BENCH = ROOT / "bench"
TESTS = ROOT / "tests"
TEST_GROUPS = ("logic", "processes")
# what a test in tests/logic/ may not use: each starts a process, or needs a server that runs as one
PROCESS_FIXTURES = {"supervise", "supervise_process", "postgres_server", "postgres_cluster", "postgres_url"}
PROCESS_MODULES = {"subprocess", "multiprocessing"}
PROCESS_CALLS = {"fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "popen", "Popen"} | {
    "exec" + s for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")
}
MAX_LINES = 500
MAX_TOP_MODULES = 15


def _modules(tree: Path = PACKAGE, base: Path | None = None) -> dict[str, Path]:
    """Dotted name -> file, for every module under ``tree``, named from ``base``
    (the directory a script runs from: the package's parent, or bench/ itself)."""
    base = base or tree.parent
    out = {}
    for path in tree.rglob("*.py"):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports; ``from pkg import sub`` is an
    import of ``pkg.sub`` when that is a module, else of ``pkg``."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    for modules in (_modules(), _modules(BENCH, BENCH)):
        graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
        cycle = _cycle(graph)
        assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_can_fail():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_modules_stay_small():
    big = {
        str(path.relative_to(ROOT)): n
        for tree in (PACKAGE, BENCH)
        for path in tree.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_the_top_level_is_a_table_of_contents():
    plain = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(plain) <= MAX_TOP_MODULES, f"{len(plain)} modules at the top of supervisor/: {plain}"


def test_each_module_name_is_used_once():
    seen: dict[str, list[str]] = {}
    for dotted in _modules():
        seen.setdefault(dotted.rpartition(".")[2], []).append(dotted)
    twice = {name: where for name, where in seen.items() if len(where) > 1}
    assert not twice, f"module names used more than once: {twice}"


def test_runners_hold_no_http_server():
    """runners/ keeps the thin runners, one per row of RUNNERS; the HTTP
    engines live in supervisor/http/, one per row of ENGINES."""
    from supervisor.http.engines import ENGINES
    from supervisor.settings.config import Config
    from supervisor.settings.declare import Setting
    from supervisor.worker.runners import RUNNERS

    listed = {info.module for info in RUNNERS.values() if info.module is not None}
    here = {
        f"supervisor.worker.runners.{path.stem}"
        for path in (PACKAGE / "worker" / "runners").glob("*.py")
        if path.stem != "__init__"
    }
    assert here == listed, f"modules in runners/ that no RUNNERS row names: {sorted(here - listed)}"
    assert all(engine.module.startswith("supervisor.http.") for engine in ENGINES.values())
    choices = Config.__dataclass_fields__["http"].metadata["setting"]
    assert isinstance(choices, Setting) and tuple(ENGINES) == choices.choices


def test_every_test_file_is_in_a_group():
    """tests/logic/ or tests/processes/, nowhere else; and each file name once, since
    pytest imports test modules by their base name (rootdir-less, prepend mode)."""
    files = [p.relative_to(TESTS) for p in TESTS.rglob("test_*.py") if "apps" not in p.parts]
    astray = sorted(str(p) for p in files if len(p.parts) != 2 or p.parts[0] not in TEST_GROUPS)
    assert not astray, f"test files outside tests/logic/ and tests/processes/: {astray}"
    names = [p.name for p in files]
    assert len(names) == len(set(names)), f"a test file name used twice: {sorted(names)}"


def test_logic_tests_start_no_process():
    """A test in tests/logic/ takes no fixture that starts the supervisor or
    PostgreSQL, imports no subprocess module and calls no fork or exec."""
    found = []
    for path in sorted((TESTS / "logic").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                used = PROCESS_FIXTURES & {a.arg for a in node.args.args}
                found += [f"{path.name}::{node.name} takes {name}" for name in sorted(used)]
            elif isinstance(node, ast.Import | ast.ImportFrom):
                modules = (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                )
                found += [f"{path.name} imports {m}" for m in modules if m.split(".")[0] in PROCESS_MODULES]
            elif isinstance(node, ast.Attribute) and node.attr in PROCESS_CALLS:
                found.append(f"{path.name}:{node.lineno} uses .{node.attr}")
    assert not found, "tests/logic/ is for tests that run in the test process:\n" + "\n".join(found)
