"""Knowing when a model does not know (equignnmd/novelty.py, the rollout's NoveltyMonitor): the
shipped bulk-only ``equivariant-al`` warns within the first strides on a slab and on a liquid,
and is silent on bulk inside its range; the box travels in the checkpoint."""

from __future__ import annotations

import warnings

import ase.io
import ase.units
import numpy as np
import pytest
import torch
from ase.build import bulk, fcc100

import equignnmd
from equignnmd._lammps import resolve_potential
from equignnmd.checkpoint import load_checkpoint, save_checkpoint
from equignnmd.cli import main
from equignnmd.data.lammps_md import LammpsMD, MDSettings
from equignnmd.novelty import NoveltyBox, fit_novelty_box
from equignnmd.rollout import Rollout, RolloutConfig
from equignnmd.rollout.guard import NoveltyWarning

pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def v2():
    model = equignnmd.load_checkpoint("pretrained:equivariant-al", device="cpu")
    assert model.novelty_box is not None  # shipped with its training box
    return model


def _with_velocities(atoms, temperature_K: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(temperature_K * ase.units.kB / atoms.get_masses()[:, None])
    v = rng.normal(0.0, 1.0, (len(atoms), 3)) * sigma
    atoms.set_velocities(v - v.mean(0))
    return atoms


def _run(model, atoms, temperature_K: float, steps: int = 3, **settings):
    cfg = RolloutConfig.of(
        dt_fs=20.0, steps=steps, temperature_K=temperature_K, thermostat="csvr",
        progress=False, write_every=0, **settings,
    )  # fmt: skip
    fractions = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Rollout(model, atoms, cfg) as ro:
            ro.attach(lambda state, thermo: fractions.append(thermo["novelty_fraction"][0]))
            result = ro.run()
    said = [str(w.message) for w in caught if issubclass(w.category, NoveltyWarning)]
    return fractions, said, result


def test_bulk_only_model_warns_at_once_on_a_slab(v2):
    slab = _with_velocities(fcc100("Al", (5, 5, 8), a=4.07, vacuum=6.0, periodic=True), 300.0)
    fractions, said, _ = _run(v2, slab, 300.0)
    assert fractions[0] > 0.1  # the surface layers, before the first stride
    assert len(said) == 1  # once, naming the step, the replica, the atoms and where
    assert said[0].startswith("step 0, replica 0:") and "atoms 0, 1," in said[0]
    assert "local densities outside the model's training states" in said[0]


def test_bulk_only_model_warns_at_once_on_a_liquid(v2):
    settings = MDSettings(
        potential=resolve_potential(None), cells=3, temperature_K=1100.0, seed=5,
        structure="liquid", melt_K=1800.0, melt_ps=1.0, descriptors=False,
    )  # fmt: skip
    md = LammpsMD(settings)
    for commands, n in md.stages(200):
        md.command_stage(commands)
        md.run(n)
    frame = md.frame()
    md.close()
    liquid = ase.Atoms(
        "Al" * len(frame["positions"]), positions=frame["positions"], cell=frame["cell"],
        pbc=True,
    )  # fmt: skip
    liquid.set_velocities(frame["velocities"] * ase.units.fs * 1e-3)  # Å/ps → ASE
    fractions, said, _ = _run(v2, liquid, 1100.0, max_temperature_factor=None)
    assert fractions[0] > 0.1 and len(said) == 1


def test_silent_on_bulk_inside_its_range(v2):
    crystal = bulk("Al", "fcc", a=4.075, cubic=True).repeat((4, 4, 4))
    crystal.rattle(0.03, seed=2)
    fractions, said, result = _run(v2, _with_velocities(crystal, 450.0), 450.0, steps=5)
    assert said == [] and max(fractions) <= 0.02 and result.completed


def test_novelty_stop_stops_the_run(v2, tmp_path, capsys):
    slab = _with_velocities(fcc100("Al", (5, 5, 8), a=4.07, vacuum=6.0, periodic=True), 300.0)
    ase.io.write(tmp_path / "slab.extxyz", slab)
    argv = [
        "rollout", "--checkpoint", "pretrained:equivariant-al", "--structure",
        str(tmp_path / "slab.extxyz"), "--dt", "20", "--steps", "5", "--temperature", "300",
        "--thermostat", "csvr", "--novelty-stop", "--out", str(tmp_path / "ro"), "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "rollout unstable at step 0" in err and "outside the model's training states" in err
    header = (tmp_path / "ro" / "thermo.csv").read_text().splitlines()[0]
    assert header.endswith("novelty_fraction")


def test_box_fit_and_checkpoint_round_trip(tmp_path):
    crystal = bulk("Al", "fcc", a=4.05, cubic=True).repeat((4, 4, 4))
    frames = []
    for seed in range(3):
        c = crystal.copy()
        c.rattle(0.05, seed=seed)
        frames.append((c.positions, c.cell.array))
    box = fit_novelty_box(frames, 5.5, "three rattled crystals")
    assert all(lo < hi for lo, hi in zip(box.low, box.high))
    assert not bool(box.outside(*frames[0]).any())
    model = load_checkpoint("pretrained:paper-al", device="cpu")
    assert model.novelty_box is None
    model.novelty_box = box
    save_checkpoint(tmp_path / "m.pt", model, model.data_summary)
    back = load_checkpoint(tmp_path / "m.pt")
    assert back.novelty_box == box
    with pytest.raises(ValueError, match="novelty box: expected a mapping"):
        NoveltyBox.from_dict({"low": [0.0]})
    torch.testing.assert_close(
        box.features(*frames[1]), back.novelty_box.features(*frames[1]), rtol=0, atol=0
    )
