"""The surrogate inside LAMMPS (equignnmd/lammps.py): fix external moves the atoms, LAMMPS's
own computes, dumps and restarts read them, serial and on 2 MPI ranks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lammps_driver import SETUP, gathered, tiny_fix_model, unwrapped_by_id
from lammps_driver import main as driver_main

from equignnmd import analysis
from equignnmd._lammps import new_lammps
from equignnmd.checkpoint import save_checkpoint
from equignnmd.descriptors import cna_cutoff_A, compute_descriptors
from equignnmd.lammps import LammpsSetupError, SurrogateFix, _Box, run_script
from equignnmd.models.base import Prediction, SurrogateModel
from equignnmd.rollout import RolloutState, RolloutUnstable, run_rollout

pytestmark = pytest.mark.usefixtures("one_thread_module")
ROOT = Path(__file__).parents[1]
DT_FS = 2.0  # the tiny untrained model stays close to free flight over a few short strides


def lammps_with(commands) -> object:
    lmp = new_lammps()
    for c in commands:
        lmp.command(c)
    return lmp


@pytest.mark.parametrize("arch", ["equivariant", "paper"])
def test_fix_trajectory_is_the_rollout_engine_trajectory(arch):
    from test_rollout import tiny_model

    model = tiny_model(arch)
    lmp = lammps_with(SETUP)
    start, v0 = unwrapped_by_id(lmp), gathered(lmp, "v", 1, 3)
    cell = _Box.of(lmp).cell
    fix = SurrogateFix(lmp, model, dt_fs=DT_FS)
    fix.run(6)
    assert fix.moved_steps == 6 and fix.stopped is None
    assert lmp.get_thermo("time") == pytest.approx(6 * DT_FS / 1000.0)  # timestep = stride
    n = start.shape[0]
    first = RolloutState.from_arrays([start], [v0], [cell], [np.full(n, 13)], [np.full(n, 26.9815)])
    ref = run_rollout(model, first, dt_fs=DT_FS, steps=6, progress=False).final_state
    got = unwrapped_by_id(lmp)
    assert np.abs(got - start).max() > 1e-3  # the atoms did move
    np.testing.assert_allclose(got, ref.unwrapped.numpy(), atol=1e-9)
    np.testing.assert_allclose(gathered(lmp, "v", 1, 3), ref.velocities.numpy(), atol=1e-9)
    lmp.close()


def test_lammps_computes_dumps_and_restart_on_the_surrogate_trajectory(tmp_path):
    cna_cut = cna_cutoff_A()
    lmp = lammps_with(
        [
            *SETUP,
            "displace_atoms all random 0.07 0.07 0.07 5",  # lattice units: some atoms off FCC
            "compute m2 all msd",  # from the displaced sites
            f"compute c all cna/atom {cna_cut}",
            f"dump d all custom 3 {tmp_path}/traj.dump id x y z vx vy vz c_c",
            "dump_modify d sort id format float %.12g",
        ]
    )
    start = unwrapped_by_id(lmp)
    masses = np.full(start.shape[0], 26.9815)
    fix = SurrogateFix(lmp, tiny_fix_model(), dt_fs=DT_FS)
    fix.run(3)
    lmp.command(f"write_restart {tmp_path}/mid.restart")
    fix.run(3)
    box = _Box.of(lmp)
    pos, vel = unwrapped_by_id(lmp), gathered(lmp, "v", 1, 3)

    # thermo temperature and msd: LAMMPS's computes against ours on the same state
    # (the two codes' Boltzmann constants differ in the 7th digit)
    assert lmp.get_thermo("temp") == pytest.approx(
        analysis.kinetic_temperature(vel, masses), rel=1e-5
    )
    msd = np.mean(np.sum((pos - start) ** 2, axis=1))
    assert lmp.extract_compute("m2", 0, 1)[3] == pytest.approx(msd, rel=1e-9)

    # rdf: LAMMPS counts pairs through its ghost atoms, which the fix moves with their owners;
    # stale ghosts (one stride behind) would change the pair counts
    table = np.array(lmp.numpy.extract_compute("r", 0, 2))
    r_ours, g_ours = analysis.rdf(pos, box.cell, r_max=5.0, n_bins=50)
    n = pos.shape[0]
    np.testing.assert_allclose(table[:, 0], r_ours, atol=1e-12)
    np.testing.assert_allclose(table[:, 1] * (n - 1) / n, g_ours, rtol=1e-9, atol=1e-9)
    assert g_ours.max() > 1.0

    # the dump's last frame is the state, and its CNA labels are ours
    frames = Path(tmp_path, "traj.dump").read_text().split("ITEM: TIMESTEP")[1:]
    assert len(frames) == 3  # steps 0, 3, 6
    last = np.loadtxt(frames[-1].split("ITEM: ATOMS id x y z vx vy vz c_c")[1].splitlines()[1:])
    wrapped = gathered(lmp, "x", 1, 3)
    np.testing.assert_allclose(last[:, 1:4], wrapped, atol=1e-9)
    np.testing.assert_allclose(last[:, 4:7], vel, atol=1e-9)
    ours = compute_descriptors(torch.as_tensor(pos), torch.as_tensor(box.cell))[:, 1].numpy()
    np.testing.assert_array_equal(last[:, 7], ours)
    assert (ours == 1).any() and (ours != 1).any()  # FCC and not: the comparison has teeth

    # a restart file continues the same trajectory in a new LAMMPS instance
    again = lammps_with(
        [f"read_restart {tmp_path}/mid.restart", "pair_style zero 5.0", "pair_coeff * *"]
    )
    SurrogateFix(again, tiny_fix_model(), dt_fs=DT_FS).run(3)
    assert again.extract_global("ntimestep") == 6
    np.testing.assert_allclose(unwrapped_by_id(again), pos, atol=1e-6)
    lmp.close()
    again.close()


def _setup(**change) -> list[str]:
    lines = list(SETUP)
    for old, new in change.items():
        lines = [new if line.startswith(old.replace("_", " ")) else line for line in lines]
    return lines


@pytest.mark.parametrize(
    "commands,kwargs,match",
    [
        (_setup(units="units real"), {}, "units are 'real'; expected 'metal'"),
        (_setup(boundary="boundary p p f"), {}, r"periodicity \(1, 1, 0\)"),
        (_setup(region="region b block 0 2 0 2 0 2"), {}, "LAMMPS box"),
        (_setup(mass="mass 1 63.546"), {}, "mass 63.546 amu, which is no element"),
        (SETUP, {"elements": ["Cu"]}, r"type 1 is Cu \(Z = 29\); the model was trained on.*\[13"),
        (SETUP, {"elements": ["Xx"]}, r"elements\[0\] \(atom type 1\): 'Xx' is not a chemical"),
        (SETUP, {"group": "top"}, "group 'top'; expected 'all'"),
        ([*SETUP, "fix int all nve"], {}, "fix int all nve also moves atoms"),
    ],
)
def test_setup_errors_name_the_problem_before_any_command(commands, kwargs, match):
    lmp = lammps_with(commands)
    with pytest.raises((LammpsSetupError, ValueError), match=match):
        SurrogateFix(lmp, tiny_fix_model(), dt_fs=DT_FS, **kwargs)
    ids = lmp.available_ids("fix")
    assert "surrogate" not in ids  # nothing was attached
    lmp.close()


def test_an_integrator_added_during_the_runs_stops_the_run():
    lmp = lammps_with(SETUP)
    fix = SurrogateFix(lmp, tiny_fix_model(), dt_fs=DT_FS)
    fix.run(2)
    lmp.command("fix late all nve")
    with pytest.warns(RuntimeWarning, match="another fix"):
        with pytest.raises(RuntimeError, match="another fix .* is moving them too"):
            fix.run(5)
    assert fix.stopped is not None and lmp.extract_global("ntimestep") == 3
    lmp.close()


class Heating(SurrogateModel):
    """Free flight whose velocities double from the ``at``-th stride on."""

    arch = "heating"

    def __init__(self, at: int):
        super().__init__({"cutoff": 5.0})
        self.at, self.calls = at, 0
        self.dummy = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, batch) -> Prediction:
        self.calls += 1
        disp = batch.vel * (batch.dt_fs[batch.batch] / 1000.0).unsqueeze(-1)
        return Prediction(disp, batch.vel * (2.0 if self.calls >= self.at else 1.0))


def test_the_guard_stops_a_run_with_the_rollout_error():
    lmp = lammps_with(SETUP)
    fix = SurrogateFix(lmp, Heating(at=3), dt_fs=DT_FS)
    with pytest.warns(RuntimeWarning, match="exceeds max_temperature_factor"):
        with pytest.raises(RolloutUnstable, match="exceeds max_temperature_factor 3.0"):
            fix.run(10)
    assert lmp.extract_global("ntimestep") == 3 and fix.moved_steps == 2
    lmp.close()


@pytest.mark.slow
def test_two_mpi_ranks_and_the_cluster_step_match_the_serial_run(tmp_path):
    serial, cluster, ranks = (tmp_path / f"{k}.npz" for k in ("serial", "cluster", "ranks"))
    driver_main([str(serial)])
    driver_main([str(cluster), "--cluster"])
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which(
        "mpiexec"
    )
    assert mpiexec is not None, "the mpich wheel's mpiexec is missing"
    driver = ROOT / "tests" / "lammps_driver.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [mpiexec, "-n", "2", sys.executable, str(driver), str(ranks)],
        check=True, env=env, timeout=600, capture_output=True,
    )  # fmt: skip
    a = np.load(serial)
    for path, expect_ranks in ((cluster, 1), (ranks, 2)):
        b = np.load(path)
        assert int(b["ranks"]) == expect_ranks
        np.testing.assert_allclose(b["pos"], a["pos"], atol=1e-6)  # float32 rounding
        np.testing.assert_allclose(b["vel"], a["vel"], atol=1e-3)
        np.testing.assert_allclose(b["rdf"], a["rdf"], atol=1e-9)
        assert float(b["temp"]) == pytest.approx(float(a["temp"]), rel=1e-6)


def test_run_script_runs_the_example_with_the_fix_line(tmp_path, monkeypatch):
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, tiny_fix_model())
    monkeypatch.chdir(tmp_path)
    variables = {"model": str(ckpt), "dt": "2", "steps": "25", "T": "600", "energy": "none"}
    lmp, fixes = run_script(ROOT / "examples" / "lammps" / "in.surrogate", variables=variables)
    assert set(fixes) == {"md"} and fixes["md"].moved_steps == 25
    assert lmp.extract_global("ntimestep") == 25
    assert {"traj.lammpstrj", "rdf.dat", "end.restart"} <= {p.name for p in tmp_path.iterdir()}
    assert Path("traj.lammpstrj").read_text().count("ITEM: TIMESTEP") == 1  # step 0 of 50
    lmp.close()

    bad = tmp_path / "in.bad"
    bad.write_text("units metal\nfix md all equignnmd model x.pt dt_fs 20 colour blue\n")
    with pytest.raises(LammpsSetupError, match=r"in.bad, line 2: .*unknown keywords \['colour'\]"):
        run_script(bad)
    bad.write_text("label loop\n")
    with pytest.raises(LammpsSetupError, match="'label' is not supported"):
        run_script(bad)
    bad.write_text("units metal\nregion b block 0 1 0 1\n")
    with pytest.raises(LammpsSetupError, match="in.bad, line 2: LAMMPS: ERROR"):
        run_script(bad)


@pytest.mark.slow
def test_the_lammps_fix_benchmark_runs(tmp_path):
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, tiny_fix_model())
    out = tmp_path / "lammps-fix.md"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "lammps_fix.py"), "--model", str(ckpt),
         "--cells", "3", "4", "--ranks", "1", "--steps", "1", "--out", str(out)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    text = out.read_text()
    assert "| engine | 108 |" in text and "| fix | 256 |" in text
    assert "Memory per atom" in text


def test_cli_lammps_reports_a_missing_script(tmp_path, capsys):
    from equignnmd.cli import main

    assert main(["lammps", "-in", str(tmp_path / "in.none")]) == 2
    assert "in.none: no such LAMMPS input script" in capsys.readouterr().err
