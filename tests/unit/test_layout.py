"""The package's layout: imports run one way, report -> baseline, network, realistic -> sky ->
the top-level helpers (config, io, logs, units, calibration), and no module imports itself in
a circle.

Every import of every module under src/szmass is read with ``ast``, function-local ones
included, so a lazy import cannot hide an upward or sideways dependency.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "szmass"

#: Each stage (a subpackage, or "" for the top-level helpers) -> its level in the DAG. A module
#: may import its own stage or any stage of a lower level; a new subpackage must be added here.
LEVELS = {
    "": 0,
    "sky": 1,
    "network": 2,
    "baseline": 2,
    "realistic": 2,
    "report": 3,
    "survey": 3,
}
#: The command line: top-level modules that sit above every stage (they only dispatch).
ENTRY_POINTS = {"szmass.cli", "szmass.__main__"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts
}


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _is_module(name: str) -> bool:
    return name in MODULES


def stage(module: str) -> str:
    """The subpackage of a szmass module ("" for szmass itself and its top-level modules)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and _is_package(module)) else ""


def szmass_imports(module: str) -> list[tuple[str, int]]:
    """The szmass modules that ``module`` imports anywhere in its file: (module, line)."""
    path = MODULES[module]
    package = module if _is_package(module) else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # ``from pkg import name``: the module pkg.name where it is one, else pkg itself
            subs = [f"{target}.{alias.name}" for alias in node.names]
            targets = [s for s in subs if _is_module(s)]
            if len(targets) < len(subs):
                targets.append(target)
        else:
            continue
        for target in targets:
            if target == "szmass" or target.startswith("szmass."):
                # ``import szmass.sky.maps`` names the deepest module that exists
                while not _is_module(target):
                    target = target.rpartition(".")[0]
                found.append((target, node.lineno))
    return found


def test_every_module_has_a_stage():
    unknown = sorted({stage(m) for m in MODULES} - set(LEVELS))
    assert not unknown, f"subpackages without a level in LEVELS: {unknown}"


def test_modules_are_found():
    """Guards the checks below: they read the real tree."""
    assert {"szmass.config", "szmass.sky.simulate", "szmass.report.summary"} <= set(MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_downward(module):
    wrong = []
    for target, line in szmass_imports(module):
        src, dst = stage(module), stage(target)
        if src == dst or module in ENTRY_POINTS:
            continue
        if LEVELS[dst] > LEVELS[src]:
            wrong.append(f"{MODULES[module].name}:{line} imports {target} (upward: {dst} > {src})")
        elif LEVELS[dst] == LEVELS[src]:
            wrong.append(f"{MODULES[module].name}:{line} imports {target} (sideways: {dst})")
    assert not wrong, f"{module}:\n  " + "\n  ".join(wrong)


def test_no_circular_imports():
    graph = {m: sorted({t for t, _ in szmass_imports(m) if t != m}) for m in MODULES}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [module])
    assert not cycles, "circular imports:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)
