"""The GPU command's plumbing on the CPU (``bash benchmarks/gpu.sh --dry-run``): every section
runs or says why it was skipped, and the report is written (in smoke runs too: CI checks it)."""

from __future__ import annotations

import gpu


def test_gpu_dry_run_writes_every_section(tmp_path):
    out = tmp_path / "gpu.md"
    assert gpu.main(["--dry-run", "--out", str(out)]) == 0
    text = out.read_text()
    for title in (
        "## cuEquivariance parity",
        "## LAMMPS EAM on this machine's CPU",
        "## Rollout step throughput (steady state)",
        "## Training step",
    ):
        assert title in text, title
    assert "| failed |" not in text and "failed:" not in text, text
    assert "| eager | 108 × 1 |" in text and "samples/s |" in text
    assert "µs per atom-step" in text.split("## LAMMPS")[1]  # LAMMPS really ran
