"""Shared fixtures: one tiny real LAMMPS dataset per test session (a few seconds)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """256-atom FCC Al, 300 K (train/val) and 350 K (held out), 0.5 ps NPT equilibration,
    0.3 ps production recorded every 1 fs. Real LAMMPS EAM, Mendelev potential."""
    from equignnmd.config import load_config
    from equignnmd.data.generate import GenerateConfig, generate

    out = tmp_path_factory.mktemp("data") / "tiny"
    cfg = load_config(
        GenerateConfig,
        overrides={
            "output": str(out),
            "temperatures_K": [300.0, 350.0],
            "test_temperatures_K": [350.0],
            "cells": 4,
            "equilibration_ps": 0.5,
            "production_ps": 0.3,
            "record_every_fs": 1.0,
            "seed": 7,
        },
    )
    return generate(cfg, progress=False)


@pytest.fixture(scope="module")
def one_thread_module():
    """One intra-op torch thread for a module of small LAMMPS-and-model steps (as fast, and
    immune to oversubscription on a 2-core machine); the previous count restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def refused_before_output(capsys):
    """``check(out, cases, base)``: each ``(extra arguments, texts)`` of ``cases`` run as
    ``equignnmd generate -o out *base *extra`` exits 2, its message holds every text, and the
    output folder ``out`` is never made."""
    from equignnmd.cli import main

    def check(out, cases, base=("--elements", "Cu", "--no-progress")) -> None:
        for extra, expected in cases:
            assert main(["generate", "-o", str(out), *base, *extra]) == 2, extra
            err = capsys.readouterr().err
            assert all(text in err for text in expected), (extra, err)
            assert not out.exists(), extra

    return check
