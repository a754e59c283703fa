"""Smoke tests of the one-off studies beside them (``python -m pytest -q studies``; the
package's unit tests in ``tests/`` import no study).

The training studies of ``studies/frontier.py`` (the accuracy–cost frontier, the ``paper``
ablations): every variant names real fields of its config file and builds a model whose
switches take effect. A misspelt field would otherwise surface only after an hour of training,
as a failed run. The other studies run end to end on a tiny dataset."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import elastic_constants
import frontier
import generalisation
import novelty_signal
import npt_floor
import numpy as np
import potential_forms
import pytest
import reference_stable_step
import site_drift

from equignnmd.models import build_model, load_model_config
from equignnmd.train import load_run_spec

STUDIES = frontier.STUDIES


@pytest.mark.parametrize(
    "study, variant", [(s, v) for s, st in STUDIES.items() for v in st.variants]
)
def test_every_variant_builds(study, variant):
    st = STUDIES[study]
    arch, hparams = load_model_config(st.config)
    changes = {**st.base_model, **st.variants[variant]}
    model_changes = {k: v for k, v in changes.items() if not k.startswith("train.")}
    train_changes = {
        k.removeprefix("train."): v for k, v in changes.items() if k.startswith("train.")
    }
    fields = {**asdict(hparams), **model_changes, "compile": False}
    fields = {k: v for k, v in fields.items() if k in asdict(hparams)}
    assert set(model_changes) <= set(asdict(hparams))
    model = build_model(arch, **fields)
    for key, value in model_changes.items():
        assert model.config[key] == value, (study, variant, key)
    spec = load_run_spec(st.config, None, train_changes, {})  # trainer fields exist and check
    for key, value in train_changes.items():
        assert getattr(spec.train, key) == value, (study, variant, key)
    assert st.held_out_K and st.strides_fs and st.budget_min > 0


def test_npt_floor_splits_off_the_barostat(tiny_dataset, one_thread_module):
    """``studies/npt_floor.py --checkpoint`` (issue 15): on NPT frames the true-force Taylor
    step is exact at 1 fs once the barostat's affine motion is removed, r + vΔt is not, and
    the shipped ``paper`` model's error is split along and across the velocity."""
    rows = npt_floor.split_errors("pretrained:paper-al", str(tiny_dataset), [1.0, 10.0], 350.0, 4)
    taylor, ballistic, model = (rows[(1.0, m)] for m in ("taylor", "ballistic", "model"))
    assert taylor["intrinsic_A"] < 0.05 * taylor["error_A"]  # all barostat at 1 fs
    assert taylor["intrinsic_A"] < 0.1 * ballistic["intrinsic_A"] < ballistic["error_A"]
    for r in rows.values():
        assert r["across_A"] <= r["intrinsic_A"] + 1e-12 and r["along_v_rel"] >= 0
    assert model["intrinsic_A"] < ballistic["intrinsic_A"]  # the skip model beats vΔt's physics
    assert rows[(10.0, "model")]["error_A"] < rows[(10.0, "ballistic")]["error_A"]
    assert "| 1 | taylor |" in npt_floor.split_table(rows, 350.0, 4)


def test_potential_forms_scan(tiny_dataset, capsys, one_thread_module):
    """``studies/potential_forms.py`` (issue 12): a bad form is refused before any fit, and
    a richer pair basis fits the reference's forces better than a poorer one on the same
    frames (the lever behind the ``symplectic`` v2 candidate)."""
    forms = potential_forms
    with pytest.raises(SystemExit, match="CUTOFF/NUM_RADIAL"):
        forms.main([str(tiny_dataset), "5.5/4/4,8/2", "6.5/x/4/4"])
    assert capsys.readouterr().out == ""  # nothing fitted or printed before the error
    forms.main([str(tiny_dataset), "5.5/4/4,8/2", "6.5/16/4,8/2", "--frames", "4"])
    rows = [
        r
        for r in capsys.readouterr().out.splitlines()
        if r.startswith("| 5.5") or r.startswith("| 6.5")
    ]
    assert len(rows) == 2
    val = [float(r.split("|")[3].strip().removesuffix("%")) for r in rows]  # val 300 K column
    assert val[1] < val[0], rows


def test_elastic_constants_of_the_shipped_potential(one_thread_module):
    """``studies/elastic_constants.py`` (issue 12): LAMMPS's Mendelev Al is a stable cubic
    crystal with the file's known moduli, and the shipped ``symplectic-al`` potential (fitted
    with stress rows) has its elastic constants within 3 % and its pressure within 0.05 GPa
    at the 300-K lattice constant."""
    elastic = elastic_constants
    ref = elastic.constants(elastic.reference_energy(), 4.0732)
    assert ref["C11"] > ref["C12"] > 0 and ref["C44"] > 0  # Born stability of a cubic crystal
    assert 60 < ref["B"] < 80 and 20 < ref["C44"] < 35, ref  # Al: B ≈ 70-80, C44 ≈ 28-32 GPa
    model = elastic.constants(elastic.model_energy("pretrained:symplectic-al"), 4.0732)
    for key in ("B", "C11", "C12", "C44"):
        assert model[key] == pytest.approx(ref[key], rel=0.03), (key, model, ref)
    assert model["P"] == pytest.approx(ref["P"], abs=0.05)
    assert "| LAMMPS |" in elastic.table({("LAMMPS", 4.0732): ref})


def test_site_drift_draws_compare_model_and_lammps(one_thread_module, tmp_path):
    """``studies/site_drift.py`` (issue 12): each draw is its own LAMMPS state with both
    the model's and LAMMPS's run scored; the JSON resumes; the summary's excess and t follow
    from the draws."""
    bench = site_drift
    assert bench.seeds_of("3-5,9") == [3, 4, 5, 9]
    out = tmp_path / "drift.json"
    args = ["--temperature", "300", "--cells", "4", "--nvt-ps", "0.4", "--tau-strides", "10"]
    bench.main([*args, "--seeds", "7", "--out", str(out)])
    first = json.loads(out.read_text())
    assert "nan" not in bench.render(first, "one draw")  # no spread from one draw
    bench.main([*args, "--seeds", "7-8", "--out", str(out)])
    rows = json.loads(out.read_text())
    assert rows[0] == first[0] and [r["seed"] for r in rows] == [7, 8]
    assert rows[0]["lammps"] != rows[1]["lammps"]  # a new state and new noise per draw
    with pytest.raises(SystemExit, match="other settings"):  # no mixing of settings in one file
        bench.main([*args, "--seeds", "7-8", "--lammps-fs", "2", "--out", str(out)])
    for r in rows:
        for side in ("model", "lammps"):
            assert 0 < r[side]["site_drift_A"] < 0.2 and 150 < r[side]["temperature_K"] < 450
    s = bench.summary(rows)
    drift = [[r[k]["site_drift_A"] for r in rows] for k in ("model", "lammps")]
    assert s["excess_pct"] == pytest.approx(100 * (np.mean(drift[0]) / np.mean(drift[1]) - 1))
    assert math.isfinite(s["welch_t"]) and s["draws"] == 2


def test_novelty_features_flag_surface_atoms_not_the_crystal():
    """The novelty box built from a crystal holds every atom of the crystal; a (100) slab's
    surface atoms (lower densities) fall outside it, its middle ones do not."""
    import torch
    from ase.build import bulk, fcc100

    crystal = bulk("Al", "fcc", a=4.05, cubic=True).repeat((4, 4, 4))
    f = novelty_signal.features(crystal.positions, crystal.cell.array, 5.5)
    lo, hi = f.min(0).values, f.max(0).values
    assert not bool(novelty_signal.outside(f, lo, hi).any())
    slab = fcc100("Al", size=(4, 4, 8), a=4.05, vacuum=6.0, periodic=True)
    out = novelty_signal.outside(
        novelty_signal.features(slab.positions, slab.cell.array, 5.5), lo, hi
    )
    z = torch.as_tensor(slab.positions[:, 2])
    surface = (z < z.min() + 1.0) | (z > z.max() - 1.0)
    assert bool(out[surface].all()) and not bool(out[(z - z.mean()).abs() < 1.0].any())


def test_generalisation_scores_states_against_lammps(tmp_path, one_thread_module):
    """``studies/generalisation.py`` (issue 34): from a states dataset's frames, LAMMPS with
    two seeds and the shipped model; a slab's escaped atoms and a liquid's diffusion scored,
    results written after every run and a second call reuses them (nothing runs again)."""
    from equignnmd.config import load_config
    from equignnmd.data.generate import GenerateConfig, generate

    cfg = load_config(
        GenerateConfig,
        overrides={
            "output": str(tmp_path / "states"),
            "cells": 4,
            "equilibration_ps": 0.1,
            "production_ps": 0.1,
            "record_every_fs": 5.0,
            "seed": 3,
            "states": [
                {"structure": "slab", "miller": [1, 0, 0], "temperature_K": 300, "vacuum_A": 10},
                {"structure": "liquid", "temperature_K": 1100, "melt_K": 1500, "melt_ps": 1.0},
            ],
        },
    )
    root = generate(cfg, progress=False)
    stems = sorted(p.stem for p in root.glob("*.h5"))
    out = tmp_path / "gen"
    argv = ["--data", str(root), "--checkpoint", "pretrained:equivariant-al", "--energy",
            "none", "--states", ",".join(stems), "--ps", "0.5", "--stride-fs", "10",
            "--out", str(out)]  # fmt: skip
    assert generalisation.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == set(stems)
    slab = next(r for s, r in results.items() if s.startswith("slab"))
    liquid = next(r for s, r in results.items() if s.startswith("liquid"))
    run = "pretrained:equivariant-al, energy none"
    assert slab["LAMMPS seed 2"]["escaped_atoms"] == 0  # another seed keeps its atoms
    assert slab[run]["novelty_start"] > 0.1  # the bulk-only model's box flags the surface
    assert math.isfinite(liquid["LAMMPS seed 2"]["diffusion_A2_ps"])
    # a liquid's atoms wander further than a crystal's vibrate
    assert liquid["LAMMPS seed 2"]["msd_plateau_A2"] > 2 * slab["LAMMPS seed 2"]["msd_plateau_A2"]
    before = (out / "results.json").stat().st_mtime_ns
    assert generalisation.main(argv) == 0  # everything cached: nothing runs, nothing changes
    assert (out / "results.json").stat().st_mtime_ns == before
    assert "| slab" in (out / "table.md").read_text()


def test_reference_stable_step(tmp_path, capsys, one_thread_module):
    """``studies/reference_stable_step.py`` (issue 36) with LAMMPS EAM (the same script
    measures SevenNet-0): one equilibrated state, NVE at two steps from it, the drift and the
    energy fluctuation growing with the step, the cost per atom-step, the diverse dataset's
    cost; bad input refused before anything runs; ``--from-json`` re-prints the tables."""
    study = reference_stable_step
    with pytest.raises(SystemExit):
        study.main(["--potential", "Al_mm.eam.fs", "--steps-fs", "0,2"])
    assert "--steps-fs" in capsys.readouterr().err
    assert study.main(["--steps-fs", "1"]) == 2
    assert "expected --calculator, --potential or --from-json" in capsys.readouterr().err
    out = tmp_path / "eam.json"
    argv = ["--potential", "Al_mm.eam.fs", "--steps-fs", "1,10", "--nve-ps", "0.1",
            "--equilibrate-steps", "50", "--estimate-cells", "3", "--out", str(out)]  # fmt: skip
    assert study.main(argv) == 0
    result = json.loads(out.read_text())
    one, ten = result["rows"]
    assert result["atoms"] == 108 and one["steps"] == 100 and ten["steps"] == 10
    assert abs(one["drift_meV_per_atom_ps"]) < 0.05 and one["finite"] and ten["finite"]
    assert ten["fluctuation_meV_per_atom"] > 10 * one["fluctuation_meV_per_atom"]
    assert 0 < one["us_per_atom_step"] < 1e4
    cost = {r["step_fs"]: r for r in result["dataset_cost"]}
    assert cost[1.0]["md_steps"] == 10 * cost[10.0]["md_steps"] and cost[1.0]["cells"] == 3
    printed = capsys.readouterr().out
    assert study.main(["--from-json", str(out), "--estimate-cells", "3"]) == 0
    again = capsys.readouterr().out
    assert "| 10 | 10 | 0.1 |" in again and printed.endswith(again)
