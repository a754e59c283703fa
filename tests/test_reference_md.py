"""LAMMPS reference MD from a recorded state."""

import numpy as np

from equignnmd.data.format import open_trajectories
from equignnmd.data.reference_md import lammps_reference


def test_reference_starts_from_the_same_state(tiny_dataset):
    tr = open_trajectories(tiny_dataset)[1]
    f = tr.frame(50)
    ref = lammps_reference(f["positions"], f["velocities"], f["cell"], 5.0, 4, 350.0, "none")
    assert ref["positions"].shape == (5, 256, 3)
    assert np.allclose(ref["positions"][0], f["positions"], atol=1e-10)
    assert np.allclose(ref["velocities"][0], f["velocities"], atol=1e-6)
    assert np.allclose(ref["time_fs"], [0, 5, 10, 15, 20])
    # NVE from the recorded state: first 5 fs agree with the recorded NPT trajectory closely
    # (the barostat changes positions by ~1e-4 Å over 5 fs)
    later = tr.frame(55)["positions"]
    assert np.abs(ref["positions"][1] - later).max() < 5e-3
    # unwrapped and continuous
    assert np.abs(np.diff(ref["positions"], axis=0)).max() < 0.2


def test_csvr_reference_runs(tiny_dataset):
    f = open_trajectories(tiny_dataset)[0].frame(0)
    ref = lammps_reference(f["positions"], f["velocities"], f["cell"], 10.0, 3, 300.0, "csvr")
    assert np.all(np.isfinite(ref["temperature_K"])) and ref["wall_s"] > 0


def test_lammps_md_passes_command_line_switches():
    from equignnmd._lammps import default_potential
    from equignnmd.data.lammps_md import LammpsMD, MDSettings

    settings = MDSettings(potential=default_potential(), cells=3, ensemble="nve", descriptors=False)
    with LammpsMD(settings, cmdargs=["-var", "probe", "7", "-sf", "omp"]) as md:
        assert md.lmp.extract_variable("probe") == "7"
        md.run(5)  # the OPENMP-suffixed pair style runs the same input
        assert md.frame()["thermo"]["temperature_K"] > 0
