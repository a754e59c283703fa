"""`equignnmd generate`: real LAMMPS runs, metadata, restart, bad input."""

import json
import os
import re

import numpy as np
import pytest

from equignnmd import load_checkpoint
from equignnmd.cli import main
from equignnmd.config import ConfigError, load_config
from equignnmd.data.format import held_out_files, open_trajectories, read_index
from equignnmd.data.generate import (
    ATOM_STEPS_PER_S,
    GenerateConfig,
    generate,
    measure_reference,
)
from equignnmd.novelty import dataset_novelty_box
from equignnmd.potential import fit_energy_head


def test_dataset_contents(tiny_dataset):
    meta = read_index(tiny_dataset)
    for key in (
        "units",
        "timestep_fs",
        "potential",
        "potential_sha256",
        "seed",
        "lammps_version",
        "package_version",
        "temperatures_K",
        "ensemble",
        "command_line",
        "disk_bytes",
    ):
        assert key in meta, key
    assert meta["ensemble"].startswith("NPT")
    assert len(meta["potential_sha256"]) == 64
    assert meta["initial_velocities"].startswith("Maxwell–Boltzmann at 2 × T")
    trajs = open_trajectories(tiny_dataset)
    assert [t.temperature_K for t in trajs] == [300.0, 350.0]
    tr = trajs[0]
    assert tr.n_atoms == 256 and tr.n_frames == 301
    assert np.allclose(np.diff(tr.time_fs), 1.0)
    pos = tr.read("positions")
    # unwrapped: no frame-to-frame jump anywhere near a box length
    assert np.abs(np.diff(pos, axis=0)).max() < 0.1
    desc = tr.read("descriptors")
    assert desc.shape == (301, 256, 5)
    assert set(np.unique(desc[..., 1])) <= {0, 1, 2, 3, 4, 5}
    assert np.mean(desc[..., 1] == 1) > 0.9  # 300 K FCC stays FCC
    assert np.all(desc[..., 4] >= 10)
    temps = tr.thermo("temperature_K")
    assert 200 < temps.mean() < 400
    assert tr.read("forces").shape == (301, 256, 3)
    # the EAM force on the whole box sums to ~zero
    assert np.abs(tr.read("forces", 0).sum(0)).max() < 1e-3


def test_rerun_reuses_complete_files_and_recovers_partial(tiny_dataset, tmp_path):
    cfg = load_config(
        GenerateConfig,
        overrides={
            "output": str(tmp_path / "d"),
            "temperatures_K": [300.0, 500.0],
            "test_temperatures_K": [],
            "equilibration_ps": 0.02,
            "production_ps": 0.02,
        },
    )
    out = generate(cfg, progress=False)
    first = out / "T0300K.h5"
    mtime = first.stat().st_mtime_ns
    # simulate a run killed during 500 K: the final file is gone, a partial one is left
    (out / "T0500K.h5").rename(out / "T0500K.h5.partial")
    generate(cfg, progress=False)
    assert first.stat().st_mtime_ns == mtime  # reused
    assert (out / "T0500K.h5").exists() and not (out / "T0500K.h5.partial").exists()
    assert len(read_index(out)["trajectories"]) == 2
    # a changed setting invalidates the reuse
    cfg.seed += 1
    generate(cfg, progress=False)
    assert first.stat().st_mtime_ns != mtime


def test_config_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("temperatures_K: [300]\ncells: many\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*'cells'.*integer"):
        load_config(GenerateConfig, bad)
    bad.write_text("temperature: 300\n")
    with pytest.raises(ConfigError, match=r"unknown field.*temperature"):
        load_config(GenerateConfig, bad)
    with pytest.raises(ConfigError, match="test_temperatures_K"):
        load_config(GenerateConfig, overrides={"temperatures_K": [300], "test_temperatures_K": [5]})
    with pytest.raises(ConfigError, match="record_every_fs"):
        load_config(GenerateConfig, overrides={"record_every_fs": 1.5})


def test_cli_overrides_and_estimate(capsys):
    assert main(["generate", "--config", "paper", "--estimate"]) == 0
    text = capsys.readouterr().out
    assert "4000 atoms" in text and "GB" in text
    assert (
        main(["generate", "--config", "quick", "--cells", "5", "--set", "seed=3", "--estimate"])
        == 0
    )
    assert "500 atoms" in capsys.readouterr().out


def test_estimate_arithmetic_keeps_the_eam_calibration():
    """With Al EAM's rate (the default) a config recorded every step (2 steps in 3) costs what
    the old 6e4 atom-steps/s said; a reference 10× dearer per step costs more, not 10×."""
    cfg = load_config(GenerateConfig)
    old = cfg.atom_steps() / ATOM_STEPS_PER_S
    assert cfg.estimate_s() == pytest.approx(old, rel=0.15)
    assert cfg.atom_frames() == 3 * 256 * 3001 and cfg.atom_steps() == 3 * 256 * 5000
    dear = cfg.estimate_s(atom_steps_per_s=5.0e4)
    assert cfg.estimate_s() < dear < 10 * cfg.estimate_s()
    assert dear - cfg.estimate_s() == pytest.approx(cfg.atom_steps() * (1 / 5e4 - 1 / 5e5))


def test_estimate_times_the_reference_snap_dearer_than_eam():
    """The reference is timed on the first trajectory's box: quadratic SNAP (~90 µs per
    atom-step) against EAM (~2 µs) on the same 108-atom box; a cost ratio, not a timing."""
    short = {"cells": 3, "temperatures_K": [300.0], "test_temperatures_K": []}
    eam = measure_reference(load_config(GenerateConfig, overrides=short))
    snap_cfg = load_config(
        GenerateConfig,
        overrides={**short, "element": "Cu", "potential": "Cu_Zuo_JPCA2020.quadratic.snap"},
    )
    snap = measure_reference(snap_cfg)
    assert eam.atoms == snap.atoms == 108 and eam.steps >= 1 and snap.steps >= 1
    assert eam.reference == "EAM Al_mm.eam.fs" and "quadratic.snap" in snap.reference
    assert snap.s_per_atom_step >= 3 * eam.s_per_atom_step
    assert snap_cfg.estimate_s(snap.atom_steps_per_s) > snap_cfg.estimate_s(eam.atom_steps_per_s)


def test_estimate_prints_the_measured_rate_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no log.lammps, no output folder
    out = tmp_path / "never"
    argv = ["generate", "-o", str(out), "--cells", "3", "--elements", "Cu", "--estimate"]
    assert main([*argv, "--potential", "Cu_Zuo_JPCA2020.snap"]) == 0
    text = capsys.readouterr().out
    line = re.search(
        r"reference SNAP Cu_Zuo_JPCA2020\.snap: [\d.,]+ µs per atom-step measured "
        r"\((\d+) steps?, 108 atoms, one rank\)",
        text,
    )
    assert line is not None, text
    assert "on one rank" in text and "MPI ranks divide it" in text
    assert list(tmp_path.iterdir()) == []


def test_missing_potential_is_clear(tmp_path, capsys):
    rc = main(
        ["generate", "-o", str(tmp_path / "x"), "--potential", "nope.eam.fs", "--no-progress"]
    )
    assert rc == 2
    assert "nope.eam.fs" in capsys.readouterr().err


@pytest.mark.skipif(os.environ.get("EQUIGNNMD_SKIP_MPI") == "1", reason="MPI disabled")
def test_mpi_two_ranks_matches_first_frame(tmp_path):
    """LAMMPS' own domain decomposition over 2 MPI ranks; rank 0 writes."""
    out = tmp_path / "mpi"
    rc = main(
        [
            "generate",
            "-o",
            str(out),
            "--temperatures",
            "300",
            "--equilibration-ps",
            "0.01",
            "--production-ps",
            "0.01",
            "--mpi-ranks",
            "2",
            "--no-progress",
        ]
    )
    assert rc == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["mpi_ranks"] == 2
    serial = tmp_path / "serial"
    main(
        [
            "generate",
            "-o",
            str(serial),
            "--temperatures",
            "300",
            "--equilibration-ps",
            "0.01",
            "--production-ps",
            "0.01",
            "--no-progress",
        ]
    )
    a, b = open_trajectories(out)[0], open_trajectories(serial)[0]
    assert a.n_frames == b.n_frames == 11
    # same seed, same physics; round-off differs between decompositions
    assert np.allclose(a.read("positions"), b.read("positions"), atol=1e-6)


def test_vacancy_box(tmp_path):
    cfg = load_config(
        GenerateConfig,
        overrides={
            "output": str(tmp_path / "vac"),
            "temperatures_K": [300.0],
            "test_temperatures_K": [300.0],
            "equilibration_ps": 0.02,
            "production_ps": 0.01,
            "vacancies": 2,
            "seed": 11,
        },
    )
    (tr,) = open_trajectories(generate(cfg, progress=False))
    assert tr.n_atoms == 254 and read_index(tmp_path / "vac")["trajectories"][0]["atoms"] == 254
    cna = tr.read("descriptors", 0)[:, 1]
    # the 2 × 12 neighbours of the empty sites lose their FCC label; the rest stay FCC
    assert 12 <= np.sum(cna != 1) <= 40 and np.mean(cna == 1) > 0.8
    with pytest.raises(ConfigError, match="vacancies"):
        load_config(GenerateConfig, overrides={"vacancies": 256})


def test_non_finite_lammps_frame_is_refused(tmp_path, monkeypatch):
    """A real LAMMPS run whose third recorded frame comes back with a NaN velocity (fault
    injected after LAMMPS returns it): generate stops with an error naming the temperature and
    step, and leaves no trajectory file, partial or final."""
    from equignnmd.data.lammps_md import LammpsMD

    real_frame = LammpsMD.frame
    calls = []

    def poisoned(self):
        out = real_frame(self)
        calls.append(self.step)
        if len(calls) == 3:
            out["velocities"][5, 2] = np.nan
        return out

    monkeypatch.setattr(LammpsMD, "frame", poisoned)
    cfg = load_config(
        GenerateConfig,
        overrides={
            "output": str(tmp_path / "nan"),
            "temperatures_K": [300.0],
            "test_temperatures_K": [],
            "cells": 2,
            "equilibration_ps": 0.005,
            "production_ps": 0.005,
            "record_every_fs": 1.0,
        },
    )
    with pytest.raises(ValueError) as err:
        generate(cfg, progress=False)
    msg = str(err.value)
    assert calls[2] == 7  # 5 equilibration steps, then frames at steps 5, 6, 7
    assert "300 K" in msg and "step 7" in msg, msg
    assert "'velocities'" in msg and "atom 5" in msg and "expected finite values" in msg, msg
    assert not list((tmp_path / "nan").glob("*.h5*"))


def test_states_build_run_and_record(tmp_path):
    """Every structure of a ``states`` dataset, tiny (108-atom class) and short, real LAMMPS."""
    states = [
        {"structure": "bulk", "temperature_K": 300},
        {"structure": "bulk", "temperature_K": 300, "strain": 0.03},
        {"structure": "vacancy", "temperature_K": 300},
        {"structure": "divacancy", "temperature_K": 300},
        {"structure": "interstitial", "temperature_K": 300},
        {"structure": "slab", "miller": [1, 1, 1], "temperature_K": 300, "test": True},
        {"structure": "liquid", "temperature_K": 1300, "melt_ps": 1.0},
        {"structure": "quench", "temperature_K": 600, "melt_ps": 0.1, "quench_ps": 0.1},
    ]
    cfg = load_config(
        GenerateConfig,
        overrides={
            "output": str(tmp_path / "states"),
            "cells": 3,
            "equilibration_ps": 0.1,
            "production_ps": 0.3,
            "record_every_fs": 5.0,
            "record_energies": True,
            "states": states,
        },
    )
    assert cfg.temperatures_K == [300, 300, 300, 300, 300, 300, 1300, 600]
    assert cfg.test_temperatures_K == []  # 300 K has training states: held out by flag only
    out = generate(cfg, progress=False)
    meta = read_index(out)
    entries = {t["file"]: t for t in meta["trajectories"]}
    assert list(entries) == [
        "bulk_T0300K.h5",
        "bulk_s+3_T0300K.h5",
        "vacancy_T0300K.h5",
        "divacancy_T0300K.h5",
        "interstitial_T0300K.h5",
        "slab111_T0300K.h5",
        "liquid_T1300K.h5",
        "quench_T0600K.h5",
    ]
    assert [t["test"] for t in entries.values()] == [False] * 5 + [True] + [False] * 2
    assert entries["slab111_T0300K.h5"]["state"]["vacuum_A"] == 12.0
    trajs = dict(zip(entries, open_trajectories(out)))
    atoms = {name: tr.n_atoms for name, tr in trajs.items()}
    assert atoms["bulk_T0300K.h5"] == 108 and atoms["vacancy_T0300K.h5"] == 107
    assert atoms["divacancy_T0300K.h5"] == 106 and atoms["interstitial_T0300K.h5"] == 109
    assert all(atoms[n] == entries[n]["atoms"] for n in entries)
    for tr in trajs.values():  # per-atom energies sum to the potential energy
        e = tr.read("energies")
        assert e.shape == (tr.n_frames, tr.n_atoms) and tr.read("virial").shape == (tr.n_frames, 6)
        assert np.allclose(e.sum(1), tr.thermo("pe_eV"), atol=1e-3 * tr.n_atoms)
    # the strained cell is held 3 % larger than the NPT one
    ratio = (
        trajs["bulk_s+3_T0300K.h5"].read("cell", 0)[0, 0]
        / trajs["bulk_T0300K.h5"].read("cell", 0)[0, 0]
    )
    assert 1.02 < ratio < 1.04
    # slab: ≥ 10 Å of vacuum along z, and the atoms stay in the film
    slab = trajs["slab111_T0300K.h5"]
    z = slab.read("positions")[..., 2]
    lz = slab.read("cell")[:, 2, 2]
    assert np.all(lz - np.ptp(z, axis=1) >= 10.0)
    assert np.abs(z - z[0]).max() < 1.5
    # liquid atoms diffuse; crystal atoms only vibrate

    def msd(tr):
        p = tr.read("positions")
        return ((p[-1] - p[0]) ** 2).sum(1).mean()

    assert msd(trajs["liquid_T1300K.h5"]) > 0.5
    assert msd(trajs["bulk_T0300K.h5"]) < 0.1
    assert msd(trajs["liquid_T1300K.h5"]) > 10 * msd(trajs["bulk_T0300K.h5"])
    # the held-out facet at a trained temperature: test split only, never train or val
    from equignnmd.data.dataset import PairDataset

    slab_k = list(entries).index("slab111_T0300K.h5")
    seen = {
        split: set(PairDataset(out, [5.0], split).index.traj.tolist())
        for split in ("train", "val", "test")
    }
    assert seen["test"] == {slab_k} and slab_k not in seen["train"] | seen["val"]
    assert seen["train"] == set(range(len(entries))) - {slab_k}
    # ... and the energy-head fit and the novelty box keep it out the same way
    assert held_out_files(meta) == {"slab111_T0300K.h5"}
    model = load_checkpoint("pretrained:equivariant-al")
    _, report = fit_energy_head(model, out, {"frames_per_temperature": 2}, log=None)
    assert "test 300 K" in report["scores"] and report["held_out_temperatures_K"] == [300.0]
    assert "val bulk_T0300K" in report["scores"] and not any("slab" in k for k in report["scores"])
    assert "slab111" not in dataset_novelty_box(out, model.cutoff, 2).source
    # a re-run reuses every file (each state's settings key is stable)
    mtime = {n: (out / n).stat().st_mtime_ns for n in entries}
    generate(cfg, progress=False)
    assert mtime == {n: (out / n).stat().st_mtime_ns for n in entries}


def test_state_config_errors_name_the_state_and_field():
    def states(*items):
        return {"states": list(items)}

    slab = {"structure": "slab", "temperature_K": 300, "vacuum_A": 5}
    with pytest.raises(ConfigError, match=r"states\[1\] \(slab\): field 'vacuum_A' = 5.0.*≥ 10"):
        load_config(GenerateConfig, overrides=states({"temperature_K": 300}, slab))
    with pytest.raises(ConfigError, match=r"states\[0\] \(hcp\): field 'structure'.*bulk"):
        load_config(GenerateConfig, overrides=states({"structure": "hcp"}))
    with pytest.raises(ConfigError, match=r"states\[0\] \(slab\): field 'miller'"):
        load_config(GenerateConfig, overrides=states({"structure": "slab", "miller": [2, 1, 0]}))
    with pytest.raises(ConfigError, match=r"states\[0\] \(quench\): field 'quench_ps'"):
        load_config(GenerateConfig, overrides=states({"structure": "quench"}))
    with pytest.raises(ConfigError, match=r"states\[0\] and states\[1\].*bulk_T0300K.h5"):
        load_config(GenerateConfig, overrides=states({"temperature_K": 300}, {}))
    with pytest.raises(ConfigError, match=r"states\[0\].*unknown field.*'vacumm_A'"):
        load_config(GenerateConfig, overrides=states({"vacumm_A": 12}))


def test_temperature_configs_keep_their_files_and_settings_keys():
    """Configs without states make the same files with the same reuse keys as before."""
    from equignnmd.config import resolve_config
    from equignnmd.data.generate import _settings_key

    cfg = load_config(GenerateConfig, resolve_config("quick", "data"))
    keys = [_settings_key(cfg, t, "abc") for t in cfg.temperatures_K]
    assert keys == ["ad924b12a91a5fbf", "34200414be74f2a3", "a34b1569920c72ca"]
    assert [st.test for st in cfg.state_list()] == [False, True, False]


def test_diverse_estimate(capsys):
    assert main(["generate", "--config", "diverse", "--estimate"]) == 0
    text = capsys.readouterr().out
    assert "28 trajectories × 490–504 atoms" in text and "GB" in text
    assert re.search(r"about [\d.]+ (min|h) on one rank", text) and "EAM Al_mm.eam.fs" in text
    cfg = load_config(GenerateConfig, overrides={"states": [{"structure": "slab"}], "cells": 5})
    assert cfg.disk_bytes() > 0 and cfg.md_steps() == 5000
