"""A machine-learned potential as a named, offline reference (issue 36): ``--calculator
sevennet-0`` (:mod:`equignnmd.mlip`), the SevenNet-0 checkpoint that ships in the ``sevenn``
wheel of the optional extra ``mlip``.

The record and the refusals run everywhere; the real calculator (a short ``generate`` of
108-atom FCC Al, 12.15 Å: the smallest box of whole cells ≥ 2 × SevenNet-0's 5-Å cutoff) runs
where the extra is installed and is skipped, saying so, where it is not.
"""

from __future__ import annotations

import importlib.metadata
import sys

import numpy as np
import pytest
import torch

from equignnmd.calculator import AseCalculator
from equignnmd.cli import main
from equignnmd.data.format import open_trajectories, read_index
from equignnmd.data.reference_md import dataset_reference
from equignnmd.mlip import INSTALL, NAMED_CALCULATORS, named_calculator
from equignnmd.potential import reference_source
from equignnmd.provenance import file_sha256

pytestmark = pytest.mark.usefixtures("one_thread_module")

FACTORY = "equignnmd.mlip:sevennet_0"
NEEDS_EXTRA = f"SevenNet-0 needs the optional extra mlip: {INSTALL}"
SHORT = ["--no-progress", "--seed", "11"]


def sevenn_installed():
    return pytest.importorskip("sevenn", reason=NEEDS_EXTRA)


@pytest.fixture(scope="module")
def sevennet_al(tmp_path_factory):
    """``generate --calculator sevennet-0``: FCC Al, 3³ cells (108 atoms) at Al's 4.05 Å, MTK
    NPT at 300 K, 4 fs of equilibration and 4 fs recorded every 2 fs with per-atom energies
    (9 steps of 1 fs; ~30 s on one thread)."""
    sevenn_installed()
    out = tmp_path_factory.mktemp("sevennet") / "al"
    argv = [
        "generate", "-o", str(out), *SHORT, "--calculator", "sevennet-0", "--cells", "3",
        "--temperatures", "300", "--equilibration-ps", "0.004", "--production-ps", "0.004",
        "--record-every-fs", "2", "--record-energies",
    ]  # fmt: skip
    assert main(argv) == 0
    return out


# ------------------------------------------------------------ everywhere (no sevenn needed)
def test_the_name_resolves_and_its_record_round_trips():
    """``sevennet-0`` (any case) names the package's own factory; a dataset's record with
    its name and provenance rebuilds the same reference, whose fingerprint is its name and
    provenance, not the code of this package."""
    named = named_calculator(" SevenNet-0 ")
    assert named is NAMED_CALCULATORS["sevennet-0"] and named.factory == FACTORY
    assert named.package == "sevenn" and named.pinned == "0.13.0"
    assert named_calculator("ase.calculators.emt:EMT") is None
    record = {
        "factory": FACTORY, "name": "SevenNetCalculator", "ase_version": "3.25.0",
        "named": "sevennet-0",
        "provenance": {"package": "sevenn", "package_version": "0.13.0", "weights_sha256": "ab"},
    }  # fmt: skip
    calculator = AseCalculator.from_dict(record)
    assert calculator.to_dict() == record
    assert calculator.description == "ASE SevenNetCalculator (sevennet-0)"
    other = AseCalculator.from_dict(record | {"provenance": {"weights_sha256": "cd"}})
    assert calculator.fingerprint() != other.fingerprint()
    emt = AseCalculator("ase.calculators.emt:EMT", "EMT", "3.25.0")
    assert "named" not in emt.to_dict() and emt.named == "" and emt.provenance == ()


def test_missing_extra_is_refused_before_any_output(tmp_path, capsys, monkeypatch):
    """Without ``sevenn`` (hidden here), ``generate`` and ``generate --estimate`` name the
    option and the extra to install, and write nothing."""
    monkeypatch.setitem(sys.modules, "sevenn", None)  # import sevenn → ImportError
    out = tmp_path / "never"
    for extra in ([], ["--estimate"]):
        argv = ["generate", "-o", str(out), *SHORT, "--calculator", "sevennet-0", *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "field 'calculator' (--calculator) = 'sevennet-0'" in err, err
        assert "pip install 'equignnmd[mlip]'" in err and "sevenn==0.13.0" in err, err
        assert not out.exists()
    # a dataset made with it, read where the extra is missing: the same message
    record = AseCalculator(FACTORY, "SevenNetCalculator", "3.25.0", "sevennet-0")
    with pytest.raises(ValueError, match=r"dataset.json = 'sevennet-0'.*equignnmd\[mlip\]"):
        record.make("dataset.json")


def test_an_unknown_name_in_a_record_is_refused():
    record = AseCalculator(FACTORY, "SevenNetCalculator", named="sevennet-9")
    with pytest.raises(ValueError, match="named reference 'sevennet-9'.*expected one of"):
        record.make("dataset.json")


# ------------------------------------------------------------------ the real calculator
def test_other_weights_than_the_recorded_ones_are_refused():
    """A dataset's recorded SHA-256 of the weights must be the installed checkpoint's."""
    sevenn_installed()
    record = AseCalculator(
        FACTORY, "SevenNetCalculator", named="sevennet-0",
        provenance=(("package_version", "0.13.0"), ("weights_sha256", "0" * 64)),
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"dataset.json: reference 'sevennet-0' .*sevenn==0.13.0"):
        record.make("dataset.json")


@pytest.mark.slow  # ~30 s: SevenNet-0 costs ~1 s per step of 108 atoms on one thread
def test_sevennet_0_generates_al_and_is_the_datasets_reference(sevennet_al):
    """The real SevenNet-0 on 108-atom Al: its record (name, sevenn's version, the
    checkpoint's SHA-256 and 5-Å cutoff) in dataset.json; finite energies and forces, forces
    summing to zero, −3.7 eV/atom (PBE, MPtrj's energy reference), per-atom energies summing
    to the energy; the dataset's reference rebuilt from the record gives the recorded forces
    (what the Taylor baseline and ``--energy reference`` take); torch's thread count kept."""
    meta = read_index(sevennet_al)
    record = meta["calculator"]
    assert record["factory"] == FACTORY and record["named"] == "sevennet-0"
    assert record["name"] == "SevenNetCalculator"
    weights = NAMED_CALCULATORS["sevennet-0"].weights()
    assert weights.parts[-2:] == ("SevenNet_0__11Jul2024", "checkpoint_sevennet_0.pth")
    assert record["provenance"] == {
        "package": "sevenn",
        "package_version": importlib.metadata.version("sevenn"),
        "weights": "sevenn/pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth",
        "weights_sha256": file_sha256(weights),
        "cutoff_A": "5",
    }
    assert meta["reference"] == "ASE SevenNetCalculator (sevennet-0)"
    assert meta["ensemble"].startswith("NPT, ASE IsotropicMTKNPT")
    (tr,) = open_trajectories(sevennet_al)
    assert tr.n_atoms == 108 and tr.n_frames == 3
    forces, pe = tr.read("forces"), tr.thermo("pe_eV")
    assert np.isfinite(forces).all() and np.isfinite(pe).all()
    assert np.abs(forces.sum(axis=1)).max() < 1e-3  # float32 model: ~1e-6 eV/Å measured
    assert 0.05 < np.abs(forces).mean() < 1.0  # thermal forces, eV/Å
    assert (-3.8 < pe / 108).all() and (pe / 108 < -3.6).all()  # measured −3.70 eV/atom
    np.testing.assert_allclose(tr.read("energies").sum(axis=1), pe, atol=1e-3)
    reference = dataset_reference(meta)
    assert reference == AseCalculator.from_dict(record) and reference.named == "sevennet-0"
    source = reference_source(meta)
    pos, cell = tr.read("positions", 2), tr.read("cell", 2)
    wrapped = (np.linalg.solve(cell.T, pos.T).T % 1.0) @ cell
    frame = (
        torch.as_tensor(wrapped),
        torch.as_tensor(cell)[None],
        torch.as_tensor(tr.species),
        torch.zeros(108, dtype=torch.long),
    )
    np.testing.assert_allclose(source.forces(*frame).numpy(), forces[2], atol=1e-4)
    assert float(source(*frame)[0]) == pytest.approx(pe[2], abs=1e-3)
    # as --energy reference and fidelity's energy meter call it: inside a rollout's
    # inference mode, where SevenNet's own autograd forces would otherwise fail (another
    # frame: ASE would hand back the cached result of the same positions)
    pos1, cell1 = tr.read("positions", 1), tr.read("cell", 1)
    frame1 = (
        torch.as_tensor((np.linalg.solve(cell1.T, pos1.T).T % 1.0) @ cell1),
        torch.as_tensor(cell1)[None],
        *frame[2:],
    )
    with torch.inference_mode():
        assert float(source(*frame1)[0]) == pytest.approx(pe[1], abs=1e-3)
    assert torch.get_num_threads() == 1  # the fixture's; building SevenNet-0 kept it
