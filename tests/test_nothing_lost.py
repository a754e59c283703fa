"""Nothing lost, nothing slow by surprise: every writing command refuses a non-empty output
place without --overwrite/--resume, a killed rollout resumes to the trajectory it would have
had, a start the guard would stop at step 0 writes nothing, and the package sets the OpenMP
wait policy before torch loads whichever way it is entered."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import ase.units
import numpy as np
import pytest
import torch
from ase.build import bulk
from test_rollout import fcc, tiny_model

from equignnmd.ase_md import SurrogateMD
from equignnmd.cli import main
from equignnmd.outputs import OutputExistsError, claim_output
from equignnmd.rollout import Rollout, RolloutConfig

pytestmark = pytest.mark.usefixtures("one_thread_module")


def _earlier_run(folder: Path) -> Path:
    """A folder holding an earlier result (what must not be lost)."""
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / "earlier_result.extxyz"
    kept.write_text("an earlier 50-ps trajectory\n")
    return kept


# every command that writes, with arguments that would otherwise go on to real work (a
# missing input would be found later: the refusal must come first)
WRITERS = {
    "generate": ["generate", "--output", "{dir}", "--no-progress"],
    "convert": ["convert", "missing.lammpstrj", "-o", "{dir}", "--timestep-fs", "1"],
    "train": ["train", "--config", "equivariant-small", "--data", "missing", "--out", "{dir}"],
    "rollout": [
        "rollout", "--checkpoint", "pretrained:equivariant-al", "--structure", "missing.extxyz",
        "--dt", "20", "--steps", "5", "--out", "{dir}", "--no-progress",
    ],
    "evaluate": ["evaluate", "--checkpoint", "missing.pt", "--data", "missing", "--out", "{dir}"],
    "fidelity": ["fidelity", "--preset", "smoke", "--out", "{dir}"],
}  # fmt: skip
FILE_WRITERS = {
    "energy-head": ["energy-head", "--checkpoint", "missing.pt", "--data", "missing", "--out"],
    "lammps": ["lammps", "-in", "missing.in", "--log"],
    "baselines": ["baselines", "--data", "missing", "--json"],
    "novelty-box": ["novelty-box", "--checkpoint", "missing.pt", "--data", "missing", "--out"],
}


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_writing_commands_refuse_a_non_empty_output_folder(command, tmp_path, capsys):
    folder = tmp_path / "out"
    kept = _earlier_run(folder)
    argv = [a.format(dir=folder) for a in WRITERS[command]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "earlier_result.extxyz" in err and "--overwrite" in err, err
    if command in ("generate", "train", "rollout"):  # those that can continue what is there
        assert "--resume" in err
    assert sorted(p.name for p in folder.iterdir()) == [kept.name]
    assert kept.read_text() == "an earlier 50-ps trajectory\n"


@pytest.mark.parametrize("command", sorted(FILE_WRITERS))
def test_writing_commands_refuse_an_existing_output_file(command, tmp_path, capsys):
    target = tmp_path / (
        "earlier.pt" if command in ("energy-head", "novelty-box") else "earlier.out"
    )
    target.write_text("earlier")
    assert main([*FILE_WRITERS[command], str(target)]) == 2
    err = capsys.readouterr().err
    assert str(target) in err and "--overwrite" in err, err
    assert target.read_text() == "earlier"


def test_claim_output_accepts_empty_folders_and_the_flags(tmp_path):
    (tmp_path / "empty").mkdir()
    assert claim_output(tmp_path / "empty") == tmp_path / "empty"
    assert claim_output(tmp_path / "new") == tmp_path / "new"
    _earlier_run(tmp_path / "full")
    claim_output(tmp_path / "full", overwrite=True)
    claim_output(tmp_path / "full", resume=True)
    with pytest.raises(OutputExistsError, match="resume=True to continue"):
        claim_output(tmp_path / "full", resume=False, option="out_dir")
    with pytest.raises(OutputExistsError, match="is a folder; expected a file name"):
        claim_output(tmp_path / "full", what="JSON file", overwrite=True)


# ------------------------------------------------------------------------------- resume
class Killed(Exception):
    """Stands for SIGKILL in-process: raised by an observer, it skips every clean-up of the
    loop (the end-of-run restart, the final rollout.json)."""


def _kill_at(step: int):
    def observer(state, thermo):
        if state.step == step:
            raise Killed

    return observer


def _text(path: Path, skip_columns=("wall_s", "ns_per_day")) -> list:
    rows = np.genfromtxt(path, delimiter=",", names=True)
    return [rows[n] for n in rows.dtype.names if n not in skip_columns]


@pytest.mark.slow
@pytest.mark.parametrize("thermostat", ["csvr", "langevin"])
def test_killed_rollout_resumes_to_the_uninterrupted_trajectory(tmp_path, thermostat):
    """Two replicas (two random streams), frames every 3 steps and restarts every 5: the kill at
    step 13 leaves frames (step 12) and rows after the last restart (step 10), and half a
    frame, which the resumed run must drop and write again."""
    model = tiny_model("equivariant", torch.float64)
    settings = dict(
        dt_fs=1.0, steps=20, temperature_K=300.0, thermostat=thermostat, replicas=2,
        write_every=3, thermo_every=1, restart_every=5, progress=False,
    )  # fmt: skip
    with Rollout(model, fcc(0), RolloutConfig.of(**settings, out_dir=tmp_path / "whole")) as ro:
        whole = ro.run()
    cut = tmp_path / "cut"
    with pytest.raises(Killed):
        with Rollout(model, fcc(0), RolloutConfig.of(**settings, out_dir=cut)) as ro:
            ro.attach(_kill_at(13))
            ro.run()
    assert json.loads((cut / "rollout.json").read_text())["steps_done"] == 10
    with open(cut / "replica_000.extxyz", "a") as f:
        f.write("256\nLattice=")  # killed in the middle of a frame

    with pytest.raises(OutputExistsError, match="--resume|resume=True"):
        Rollout(model, fcc(0), RolloutConfig.of(**settings, out_dir=cut))
    with Rollout(model, None, RolloutConfig.of(**settings, out_dir=cut, resume=True)) as ro:
        resumed = ro.run()
    assert resumed.step[0] == 10 and resumed.step[-1] == 20
    gap = (resumed.final_state.unwrapped - whole.final_state.unwrapped).abs().max()
    assert float(gap) < 1e-9
    assert torch.allclose(resumed.final_state.velocities, whole.final_state.velocities, 0, 1e-9)
    for name in ("replica_000.extxyz", "replica_001.extxyz"):
        a, b = ase.io.read(tmp_path / "whole" / name, ":"), ase.io.read(cut / name, ":")
        assert [x.info["step"] for x in b] == [0, 3, 6, 9, 12, 15, 18]
        assert max(np.abs(x.positions - y.positions).max() for x, y in zip(a, b)) < 1e-9
    for x, y in zip(_text(tmp_path / "whole" / "thermo.csv"), _text(cut / "thermo.csv")):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-9)
    meta = json.loads((cut / "rollout.json").read_text())
    assert meta["steps_done"] == 20 and meta["resumed_at_steps"] == [10]

    # a resume with other settings (or another model) is refused, naming what differs
    with pytest.raises(ValueError, match="dt_fs: 1.0 in the run, 2.0 now"):
        Rollout(model, None, RolloutConfig.of(**{**settings, "dt_fs": 2.0}, out_dir=cut,
                                              resume=True))  # fmt: skip
    other = tiny_model("equivariant", torch.float64, seed=1)
    with pytest.raises(ValueError, match="model:"):
        Rollout(other, None, RolloutConfig.of(**settings, out_dir=cut, resume=True))


def test_resume_without_a_restart_file_is_clear(tmp_path):
    _earlier_run(tmp_path / "ro")
    with pytest.raises(FileNotFoundError, match="restart.pt does not exist"):
        Rollout(tiny_model("equivariant"), None, 1.0, out_dir=tmp_path / "ro", resume=True)


def test_surrogate_md_restart_file_continues_the_same_trajectory(tmp_path):
    model = tiny_model("equivariant", torch.float64)
    kw = dict(timestep=1.0 * ase.units.fs, temperature_K=300.0, thermostat="langevin", seed=3)
    whole = fcc(0)
    SurrogateMD(whole, model, **kw).run(20)

    restart = tmp_path / "md.restart"
    first = fcc(0)
    SurrogateMD(first, model, **kw, restart=restart, restart_interval=4).run(14)  # last: 12
    again = fcc(7)  # any atoms of the same kind: the restart sets them
    dyn = SurrogateMD(again, model, **kw, restart=restart, restart_interval=4)
    assert dyn.nsteps == 12
    dyn.run(8)
    assert dyn.nsteps == 20
    np.testing.assert_allclose(again.positions, whole.positions, rtol=0, atol=1e-9)
    np.testing.assert_allclose(again.get_velocities(), whole.get_velocities(), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="thermostat"):
        SurrogateMD(fcc(0), model, **{**kw, "thermostat": "csvr"}, restart=restart)


def _small_box(path: Path, velocity_factor: float = 1.0) -> Path:
    """108-atom FCC Al (12.2 Å: twice the shipped model's 5.5-Å cutoff) at ~300 K."""
    atoms = bulk("Al", "fcc", a=4.07, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.03, seed=1)
    rng = np.random.default_rng(0)
    sigma = np.sqrt(300 * ase.units.kB / atoms.get_masses()[0])
    velocities = rng.normal(0.0, sigma, (len(atoms), 3))
    atoms.set_velocities((velocities - velocities.mean(0)) * velocity_factor)
    ase.io.write(path, atoms)
    return path


def _cli(*argv: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "equignnmd", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.mark.slow
def test_rollout_killed_by_sigkill_resumes_from_the_command_line(tmp_path):
    """The real thing: ``equignnmd rollout`` killed with SIGKILL mid-run, then the same command
    with --resume, equals the uninterrupted run (float64, Langevin noise)."""
    start = _small_box(tmp_path / "start.extxyz")
    argv = [
        "rollout", "--checkpoint", "pretrained:equivariant-al", "--structure", str(start),
        "--dt", "20", "--time-ps", "1.2", "--temperature", "300", "--thermostat", "langevin",
        "--dtype", "float64", "--write-every", "4", "--restart-every", "8", "--no-progress",
    ]  # fmt: skip
    whole = _cli(*argv, "--out", str(tmp_path / "whole"))
    out, err = whole.communicate(timeout=600)
    assert whole.returncode == 0, err
    assert "60 steps of 20 fs (1.2 ps) × 1 replica(s), mean T" in out

    cut = tmp_path / "cut"
    run = _cli(*argv, "--out", str(cut))
    deadline = time.time() + 600
    while time.time() < deadline:  # kill once a restart past the start exists
        try:
            if json.loads((cut / "rollout.json").read_text()).get("steps_done", 0) >= 16:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.communicate()
    done = json.loads((cut / "rollout.json").read_text())["steps_done"]
    assert 16 <= done < 60

    again = _cli(*argv, "--out", str(cut))  # without --resume: refused, nothing touched
    _, err = again.communicate(timeout=600)
    assert again.returncode == 2 and "--resume" in err
    resumed = _cli(*argv, "--out", str(cut), "--resume")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert f"resumed at step {done}" in out
    a = ase.io.read(tmp_path / "whole" / "replica_000.extxyz", ":")
    b = ase.io.read(cut / "replica_000.extxyz", ":")
    assert [x.info["step"] for x in b] == list(range(0, 61, 4))
    gap = max(np.abs(x.positions - y.positions).max() for x, y in zip(a, b))
    assert gap < 1e-9, gap


# --------------------------------------------------------------- refused before any output
@pytest.mark.parametrize("ensemble", ["csvr", "none"])
def test_start_the_guard_would_stop_writes_nothing(tmp_path, capsys, ensemble):
    """Velocities ×100 (a unit slip): refused with one message, before the folder exists."""
    start = _small_box(tmp_path / "hot.extxyz", velocity_factor=100.0)
    out = tmp_path / "ro"
    argv = [
        "rollout", "--checkpoint", "pretrained:equivariant-al", "--structure", str(start),
        "--dt", "20", "--steps", "5", "--out", str(out), "--thermostat", ensemble,
        "--no-progress",
    ]  # fmt: skip
    if ensemble != "none":
        argv += ["--temperature", "300"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "field 'velocities' fails the stability guard at step 0" in err
    assert "trained at" in err or "× 300.0 K" in err
    assert not out.exists()


def test_a_guard_stop_is_reported_once(tmp_path, capfd):
    start = _small_box(tmp_path / "start.extxyz", velocity_factor=0.0)  # drawn at exactly 300 K
    code = main(
        [
            "rollout",
            "--checkpoint",
            "pretrained:equivariant-al",
            "--structure",
            str(start),
            "--dt",
            "20",
            "--steps",
            "5",
            "--out",
            str(tmp_path / "ro"),
            "--thermostat",
            "csvr",
            "--temperature",
            "300",
            "--max-temperature-factor",
            "1.000001",
            "--min-temperature-factor",
            "0.999999",
            "--no-progress",
        ]  # fmt: skip
    )
    assert code == 3
    err = capfd.readouterr().err
    assert err.count("rollout unstable at step 1") == 1, err
    assert "RuntimeWarning" not in err and "RolloutStopped" not in err


# ---------------------------------------------------------------------- fast by default
ENTRIES = {
    "api": "import equignnmd",
    "ase": "from equignnmd.ase_md import SurrogateMD",
    "rollout": "from equignnmd.rollout import Rollout",
    "lammps fix": "from equignnmd.lammps import SurrogateFix",
}


@pytest.mark.slow
@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_every_entry_point_sets_the_wait_policy_before_torch(entry):
    code = f"{ENTRIES[entry]}\nimport os, torch\nprint(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["passive"]
    env["OMP_WAIT_POLICY"] = "active"  # the user's own choice stays
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.split() == ["active"]


def test_help_loads_no_torch():
    code = (
        "import sys\nfrom equignnmd.cli import build_parser\nbuild_parser()\n"
        "print('torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.split() == ["False"], run.stderr


def test_time_ps_is_steps_of_the_stride(tmp_path, capsys):
    start = _small_box(tmp_path / "start.extxyz")
    base = ["rollout", "--checkpoint", "pretrained:equivariant-al", "--structure", str(start)]
    assert main([*base, "--dt", "20", "--time-ps", "0.06", "--out", str(tmp_path / "a"),
                 "--no-progress"]) == 0  # fmt: skip
    assert "3 steps of 20 fs (0.06 ps) × 1 replica(s), mean T" in capsys.readouterr().out
    assert main([*base, "--dt", "20", "--time-ps", "0.05", "--out", str(tmp_path / "b")]) == 2
    assert "whole number of strides" in capsys.readouterr().err
