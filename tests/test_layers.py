"""The house imports one way: data never imports models or the baselines, the baselines are a
leaf (nothing they import imports them back), nothing in the package imports the
repository's top-level ``benchmarks`` or ``studies``, and no unit test imports a study (each
module in a fresh process, or its source read)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
"""The repository's benchmark suite: its modules import as top-level names (``_plan``, ...)."""
STUDIES = BENCHMARKS.parent / "studies"
"""The one-off studies (``frontier``, ...): scripts with their own smoke tests beside them."""


def _imported_by(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.slow
@pytest.mark.parametrize(
    "module",
    [
        "equignnmd.data.dataset",
        "equignnmd.data.generate",
        "equignnmd.data.convert",
        "equignnmd.data.stats",
        "equignnmd.data.format",
        "equignnmd.data.lammps_md",
        "equignnmd.data.reference_md",
    ],
)
def test_data_never_imports_models(module):
    seen = _imported_by(module)
    assert not {m for m in seen if m.startswith("equignnmd.models")}
    assert not {m for m in seen if m.split(".")[0] == "baselines" or ".baselines" in m}


@pytest.mark.slow
def test_no_module_imports_the_benchmarks():
    names = sorted(_package_modules())  # the baselines' and configs' modules too
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    if not name.endswith('__main__'):\n"
        "        importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seen = set(out.stdout.split())
    assert "equignnmd.fidelity" in seen and "equignnmd.rollout.stages" in seen
    assert "equignnmd.baselines.table" in seen
    bench = {"benchmarks", *(p.stem for p in BENCHMARKS.glob("*.py"))}
    assert {"_plan", "_engine"} <= bench
    studies = {"studies", *(p.stem for p in STUDIES.glob("*.py"))}
    assert {"frontier", "site_drift"} <= studies
    assert not {m for m in seen if m.split(".")[0] in bench | studies}


def test_no_unit_test_imports_a_study():
    """The studies' smoke tests live beside them (``pytest studies``): no file of ``tests/``
    imports a study or names a study's file."""
    studies = {p.stem for p in STUDIES.glob("*.py")} - {"conftest"}
    assert {"frontier", "npt_floor"} <= studies
    for path in sorted(Path(__file__).parent.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not names & (studies | {"studies"}), (path.name, sorted(names))
        assert not [s for s in studies if f"{s}.py" in text], path.name


# ------------------------------------------------------------------------------ the baselines leaf
# ``equignnmd.baselines`` lives in the repository's ``baselines/`` (a package-dir mapping), so a
# walk of ``equignnmd.__path__`` does not see it: the installed packages are walked one by one.
INSTALLED_PACKAGES = ("equignnmd", "equignnmd.baselines", "equignnmd.configs")


def _package_modules() -> dict[str, tuple[str, bool]]:
    """Every module of the installed package: name -> (source file, is a package)."""
    found = {}
    for name in INSTALLED_PACKAGES:
        pkg = importlib.import_module(name)
        found[name] = (pkg.__file__, True)
        for m in pkgutil.walk_packages(pkg.__path__, name + "."):
            found[m.name] = (importlib.util.find_spec(m.name).origin, m.ispkg)
    return found


def _static_imports(name: str, path: str, ispkg: bool, known) -> set[str]:
    """Modules of the package that ``name`` imports anywhere in its source (function-level
    imports included), with the parent packages an import runs first."""
    pkg = name if ispkg else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for t in targets:
            parts = t.split(".")
            out.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return {m for m in out if m in known and m != name}


def _import_graph() -> dict[str, set[str]]:
    mods = _package_modules()
    return {n: _static_imports(n, path, ispkg, mods) for n, (path, ispkg) in mods.items()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for m in graph[todo.pop()]:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def test_the_import_graph_sees_every_part():
    graph = _import_graph()
    assert {"equignnmd.baselines.predictors", "equignnmd.data.reference_md"} <= set(graph)
    assert "equignnmd.baselines" in graph["equignnmd.onestep"]  # the graph sees real edges
    assert "equignnmd.models.base" in graph["equignnmd.baselines.predictors"]


def test_the_baselines_are_a_leaf():
    """No circle through the baselines: what they import never imports them back."""
    graph = _import_graph()
    baselines = {m for m in graph if m.split(".")[:2] == ["equignnmd", "baselines"]}
    assert baselines
    for b in sorted(baselines):
        for m in sorted(_reachable(graph, b) - baselines):
            back = _reachable(graph, m) & baselines
            assert not back, f"{b} imports {m}, which imports {sorted(back)} back"
    # the architectures are imported by name (the model registry): check them too
    for m in (m for m in graph if m.startswith("equignnmd.models.")):
        assert not _reachable(graph, m) & baselines, m


def test_importing_the_baselines_loads_no_consumer():
    seen = _imported_by("equignnmd.baselines.table")
    consumers = {"equignnmd.onestep", "equignnmd.evaluate", "equignnmd.train", "equignnmd.cli"}
    assert "equignnmd.baselines.predictors" in seen
    assert not seen & consumers
    assert "baselines" not in seen  # no generic top-level name
