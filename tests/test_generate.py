"""`equignnmd generate`: real LAMMPS runs, metadata, restart, bad input."""

import json
import os

import numpy as np
import pytest

from equignnmd.cli import main
from equignnmd.config import ConfigError, load_config
from equignnmd.data.format import open_trajectories, read_index
from equignnmd.data.generate import GenerateConfig, generate


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
