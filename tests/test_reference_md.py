"""LAMMPS reference MD from a recorded state; a dataset's (or a checkpoint's) reference and
crystal from its record."""

import json

import numpy as np
import pytest

from equignnmd._lammps import potentials_dir
from equignnmd.data.format import open_trajectories
from equignnmd.data.reference_md import (
    dataset_material,
    dataset_reference_material,
    lammps_reference,
)
from equignnmd.lammps_potential import detect_potential
from equignnmd.materials import ALUMINIUM
from equignnmd.provenance import file_sha256


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


def test_a_checkpoints_record_gives_its_reference_and_crystal(tmp_path):
    """``dataset_reference_material`` on what a checkpoint keeps of its data
    (``data_summary["dataset_meta"]``): the recorded absolute paths point into another
    environment's venv (a clean clone in CI), so the wheel's files of those names are taken,
    checked by SHA-256; the crystal comes from the material record, else from the recorded
    elements (Al for the oldest), else from the model's species."""
    elsewhere = "/elsewhere/.venv/lib/python3.11/site-packages/lammps/share/lammps/potentials"
    al = potentials_dir() / "Al_mm.eam.fs"
    # an Al checkpoint from before the material record: potential path and SHA-256 only
    old = {"potential": f"{elsewhere}/Al_mm.eam.fs", "potential_sha256": file_sha256(al)}
    reference, material = dataset_reference_material(old, "checkpoint al.pt")
    assert reference.commands() == detect_potential(al, ["Al"]).commands()
    assert material == ALUMINIUM
    with pytest.raises(ValueError, match=r"checkpoint al.pt: potential .*Al_mm.eam.fs is not "):
        dataset_reference_material({**old, "potential_sha256": "0" * 64}, "checkpoint al.pt")
    # a Cu SNAP checkpoint of the same vintage: its species say Cu (not the Al default)
    snap = potentials_dir() / "Cu_Zuo_JPCA2020.quadratic.snap"
    cu_old = {"potential": f"{elsewhere}/{snap.name}", "potential_sha256": file_sha256(snap)}
    reference, material = dataset_reference_material(cu_old, "checkpoint cu.pt", species=[29])
    assert reference.kind == "snap" and reference.elements == ("Cu",)
    assert material.element == "Cu" and material.mass_amu == pytest.approx(63.546, abs=1e-3)
    # a whole record (lammps_potential and material, as train.py now keeps them), moved
    record = detect_potential(snap, ["Cu"]).to_dict()
    moved = json.loads(json.dumps(record).replace(str(potentials_dir()), elsewhere))
    meta = {
        "lammps_potential": moved,
        "material": {"elements": ["Cu"], "masses_amu": [63.546], "lattice": "fcc",
                     "lattice_A": 3.6355},
    }  # fmt: skip
    reference, material = dataset_reference_material(meta, "checkpoint cu.pt", species=[13])
    assert reference.pair_coeff[0].startswith(f"* * {potentials_dir()}")
    assert material.element == "Cu" and material.lattice_A == pytest.approx(3.6355)
    # an alloy's record: its composition
    alloy = {"material": {"elements": ["Cu", "Zr"], "composition": {"Cu": 0.64, "Zr": 0.36}}}
    assert dataset_material(alloy).composition.mapping() == {"Cu": 0.64, "Zr": 0.36}
    with pytest.raises(ValueError, match="without their 'composition'"):
        dataset_material({"material": {"elements": ["Cu", "Zr"]}})
