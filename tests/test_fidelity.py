"""The fidelity benchmark (equignnmd/fidelity/) end to end on its smoke preset: real LAMMPS
EAM runs and the shipped equivariant model (a learned free-form map, not reversible: the
one-step rows have something to measure) on 108 atoms for 0.6 ps (about 15 s)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from equignnmd.checkpoint import load_checkpoint
from equignnmd.cli import main
from equignnmd.config import ConfigError
from equignnmd.fidelity import fidelity, make_config
from equignnmd.materials import ALUMINIUM

# the machinery tests run the free-form model on the smallest box its 5.5-Å cutoff allows
FREE_FORM = {"checkpoint": "pretrained:equivariant-al", "cells": 3}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("fidelity")
    cfg = make_config(
        "smoke",
        **FREE_FORM,
        out=str(out),
        nve_ps=0.6,
        nvt_ps=0.6,
        onestep_strides_fs=[10.0, 20.0],
        verlet_fs=[1.0, 10.0],
        min_frames=20,
    )
    result = fidelity(cfg, progress=lambda _: None)
    torch.set_num_threads(before)
    return out, result


def test_fidelity_report_rows_and_yardsticks(report):
    out, result = report
    (block,) = result["temperatures"]
    nve = {r["run"]: r for r in block["nve"]}
    # velocity Verlet at 1 fs conserves the EAM energy (≪ 0.05 meV/atom/ps); the drift at
    # 10 fs is measured as a number
    assert abs(nve["LAMMPS velocity Verlet 1 fs"]["drift_meV_per_atom_ps"]) < 0.05
    assert nve["LAMMPS velocity Verlet 10 fs"]["drift_meV_per_atom_ps"] is not None
    sur = nve["equivariant 20 fs"]
    assert sur["samples"] >= 5 and sur["steps_completed"] == 30
    # one step: the model beats r + vΔt at 20 fs (its training range) and both sit between
    # the zero and the Taylor baselines' error levels as they should
    row20 = next(r for r in block["onestep"] if r["stride_fs"] == 20.0)
    assert row20["model_pos_A"] < row20["ballistic_pos_A"] < row20["zero_pos_A"]
    # a learned map is not exactly reversible, but it comes back close to its start
    assert 0 < row20["reversibility_pos_A"] < row20["ballistic_pos_A"]
    # NVT: the reference row scores itself as identical; calibration rows are there; the
    # surrogate run (31 frames ≥ min_frames) has numbers
    nvt = {r["run"]: r for r in block["nvt"]}
    assert nvt["LAMMPS 1 fs (reference)"]["rdf_l1"] == pytest.approx(0.0, abs=1e-12)
    assert nvt["LAMMPS 1 fs (reference)"]["vdos_overlap"] == pytest.approx(1.0)
    assert {"LAMMPS, another seed", "LAMMPS at T -20 K", "LAMMPS at T +20 K"} <= set(nvt)
    s = nvt["equivariant 20 fs"]
    assert 0 < s["rdf_l1"] < 1 and 0 < s["vdos_overlap"] <= 1 and s["fcc_fraction_end"] > 0.5
    text = (out / "fidelity.md").read_text()
    assert "### NVE: total energy" in text and "long-wave T / T" in text
    stored = json.loads((out / "fidelity.json").read_text())
    assert stored["temperatures"][0]["nvt"][0]["frames"] == 31
    for png in block["plots"].values():
        assert (out / png).stat().st_size > 0


def test_too_few_frames_print_a_dash(tmp_path):
    cfg = make_config(
        "smoke",
        **FREE_FORM,
        out=str(tmp_path),
        nve_ps=0.1,
        nvt_ps=0.1,
        equilibrate_ps=0.2,
        verlet_fs=[1.0],
        onestep_strides_fs=[10.0],
        onestep_origins=1,
        min_frames=20,
    )
    torch.set_num_threads(1)
    result = fidelity(cfg, progress=lambda _: None)
    nvt = result["temperatures"][0]["nvt"]
    assert all(r["frames"] == 6 for r in nvt)
    nve = {r["run"]: r for r in result["temperatures"][0]["nve"]}
    assert nve["LAMMPS velocity Verlet 1 fs"]["stopped"] is None
    stored = json.loads((tmp_path / "fidelity.json").read_text())
    assert all(r["rdf_l1"] is None for r in stored["temperatures"][0]["nvt"])
    rows = [ln for ln in (tmp_path / "fidelity.md").read_text().splitlines() if "csvr" in ln]
    assert rows and all("| – |" in ln for ln in rows)


def test_a_costly_reference_runs_at_its_own_step_without_the_t_offset_rows(tmp_path):
    """``reference_fs``: the reference's equilibration, NVT and one-step pair run at its own
    (stable) step instead of 1 fs; ``calibration_dK: 0`` keeps the other-seed row only. The
    one-step pairs are then 5-fs velocity Verlet, still close enough to tell the baselines
    apart."""
    torch.set_num_threads(1)
    cfg = make_config(
        "smoke", **FREE_FORM, out=str(tmp_path), nve_ps=0.6, nvt_ps=0.6, verlet_fs=[5.0],
        onestep_strides_fs=[10.0, 20.0], min_frames=20, reference_fs=5.0, calibration_dK=0.0,
        equilibrate_ps=1.0,
    )  # fmt: skip
    cfg = replace(cfg, reference_cache=str(tmp_path / "cache"))
    result = fidelity(cfg, progress=lambda _: None)
    (block,) = result["temperatures"]
    assert result["reference_runs_reused"] == 0
    assert [r["run"] for r in block["nve"]][0] == "LAMMPS velocity Verlet 5 fs"
    runs = [r["run"] for r in block["nvt"]]
    assert runs[:2] == ["LAMMPS 5 fs (reference)", "LAMMPS, another seed"]
    assert not any(" at T " in r for r in runs) and len(runs) == 3
    row20 = next(r for r in block["onestep"] if r["stride_fs"] == 20.0)
    assert row20["taylor_pos_A"] < row20["ballistic_pos_A"] < row20["zero_pos_A"]
    assert "pairs of a 5-fs NVE reference run" in (tmp_path / "fidelity.md").read_text()
    # the reference's runs were kept: again (another model would do the same) they are read
    # back, not rerun — equilibration, the one Verlet run, two NVT runs — with equal scores
    again = fidelity(replace(cfg, out=str(tmp_path / "again")), progress=lambda _: None)
    assert again["reference_runs_reused"] == 4
    (block2,) = again["temperatures"]
    assert block2["nve"][0]["drift_meV_per_atom_ps"] == block["nve"][0]["drift_meV_per_atom_ps"]
    assert [r["rdf_l1"] for r in block2["nvt"][:2]] == [r["rdf_l1"] for r in block["nvt"][:2]]
    # a changed setting is another key: nothing stale is read
    third = replace(cfg, out=str(tmp_path / "third"), nvt_ps=0.5, nve_ps=0.5, temperatures_K=[460])
    assert fidelity(third, progress=lambda _: None)["reference_runs_reused"] == 0


def test_bad_settings_are_named(tmp_path, capsys):
    with pytest.raises(ConfigError, match="cells"):
        make_config("smoke", cells=2)
    with pytest.raises(ConfigError, match="reference_fs"):
        make_config("smoke", reference_fs=0.5)
    with pytest.raises(ConfigError, match=r"'onestep_strides_fs' .* multiples of reference_fs"):
        make_config("smoke", reference_fs=4.0)  # one-step strides 10, 20 fs
    with pytest.raises(ConfigError, match="calibration_dK"):
        make_config("smoke", calibration_dK=-5.0)
    with pytest.raises(ConfigError, match="thermostats"):
        make_config("smoke", thermostats=["none"])
    code = main(["fidelity", "--preset", "smoke", "--set", "nve_fs=3", "--out", str(tmp_path)])
    assert code == 2
    assert "nve_fs" in capsys.readouterr().err
    assert not (tmp_path / "fidelity.md").exists()


def test_smoke_box_fits_the_default_model_and_a_small_box_is_refused_first(tmp_path):
    # the default checkpoint is the model the README says to run for trajectories; the smoke
    # preset's box must hold twice its cutoff, or `equignnmd fidelity --preset smoke` fails
    cfg = make_config("smoke")
    model = load_checkpoint(cfg.checkpoint, device="cpu")
    assert cfg.checkpoint == "pretrained:symplectic-al"
    assert cfg.cells * ALUMINIUM.lattice_A >= 2 * model.cutoff
    # one cell fewer does not fit: refused naming the field, before LAMMPS runs or output
    small = make_config("smoke", cells=cfg.cells - 1, out=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match=r"'cells' is 3 .*cutoff 6.5 Å \(cells ≥ 4\)"):
        fidelity(small, model=model, progress=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_reference_runs_take_a_reference_and_a_sample_interval():
    """``equilibrated_state`` and ``verlet_nve`` run a reference given to them (the benchmark's
    own-reference table passes a checkpoint's), and ``sample_fs`` sets the energy samples."""
    from equignnmd._lammps import default_potential
    from equignnmd.fidelity.run import equilibrated_state, verlet_nve

    cfg = make_config("smoke", cells=3, equilibrate_ps=0.02, nve_ps=0.05)
    start = equilibrated_state(cfg, ALUMINIUM, 300.0, reference=default_potential())
    assert start["positions"].shape == (108, 3)
    run = verlet_nve(cfg, ALUMINIUM, start, 5.0, reference=default_potential(), sample_fs=10.0)
    assert run["stopped"] is None
    assert run["time_ps"] == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04, 0.05])
