"""Fixtures of the studies' smoke tests (``python -m pytest -q studies``): the same tiny real
LAMMPS dataset as the unit tests' (``tests/conftest.py``; the two suites share no code)."""

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
    """One intra-op torch thread for a module of small LAMMPS-and-model steps; the previous
    count restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
