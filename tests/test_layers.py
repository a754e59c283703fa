"""The house imports one way: data never imports models or the baselines, and nothing in the
package imports the repository's top-level ``benchmarks`` (each module in a fresh process)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import equignnmd


def _imported_by(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "module",
    [
        "equignnmd.data.dataset",
        "equignnmd.data.generate",
        "equignnmd.data.convert",
        "equignnmd.data.stats",
        "equignnmd.data.format",
        "equignnmd.data.lammps_md",
    ],
)
def test_data_never_imports_models(module):
    seen = _imported_by(module)
    assert not {m for m in seen if m.startswith("equignnmd.models")}
    assert not {m for m in seen if m.split(".")[0] == "baselines" or ".baselines" in m}


def test_no_module_imports_the_benchmarks():
    names = [m.name for m in pkgutil.walk_packages(equignnmd.__path__, "equignnmd.")]
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
    assert not {m for m in seen if m.split(".")[0] in ("benchmarks", "_common", "_report")}
