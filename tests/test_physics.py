"""The physics kernel and the constants each live once: these tests pin them (fast, < 10 s).

One kinetic temperature (centre-of-mass motion removed, 3N − 3 degrees of freedom) is used by
the thermostats, the analysis of trajectories and ``equignnmd convert``; one Material record
carries Al's mass, lattice constant and atomic number to the data generator, the LAMMPS driver
and the descriptors.
"""

from __future__ import annotations

import ase.build
import numpy as np
import pytest
import torch

from equignnmd import analysis, descriptors, physics, thermostats, units
from equignnmd.config import ConfigError, load_config
from equignnmd.data.generate import GenerateConfig
from equignnmd.data.lammps_md import MDSettings
from equignnmd.materials import ALUMINIUM, MATERIALS, material


def _batch(n_per=(40, 60), seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = sum(n_per)
    vel = torch.randn(n, 3, generator=gen, dtype=torch.float64) * 5.0
    masses = torch.full((n,), ALUMINIUM.mass_amu, dtype=torch.float64)
    masses[::3] = 2.0 * ALUMINIUM.mass_amu  # unequal masses: the COM is mass-weighted
    batch = torch.cat([torch.full((k,), r, dtype=torch.long) for r, k in enumerate(n_per)])
    return vel, masses, batch


def test_kinetic_temperature_is_the_thermal_motion_with_3n_minus_3():
    vel, m, b = _batch()
    t = physics.kinetic_temperature(vel, m, b)
    internal = physics.remove_net_momentum(vel, m, b)
    for r, n in enumerate((40, 60)):
        sel = b == r
        ke = 0.5 * units.MVV2E * float((m[sel] * (internal[sel] ** 2).sum(-1)).sum())
        assert float(t[r]) == pytest.approx(2 * ke / ((3 * n - 3) * units.KB_EV_PER_K), rel=1e-12)
    # a drift of the whole system is not heat
    drift = vel + torch.tensor([4.0, -2.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(physics.kinetic_temperature(drift, m, b), t, rtol=1e-12, atol=0)
    # but it is kinetic energy
    assert bool(
        (physics.kinetic_energy(drift, m, b) > physics.kinetic_energy(internal, m, b)).all()
    )


def test_one_temperature_everywhere():
    """analysis (NumPy frames), the thermostats' Maxwell–Boltzmann draw and convert agree."""
    vel, m, b = _batch(n_per=(50,))
    t = float(physics.kinetic_temperature(vel, m, b)[0])
    assert analysis.kinetic_temperature(vel.numpy(), m.numpy()) == pytest.approx(t, rel=1e-12)
    frames = np.stack([vel.numpy(), 2.0 * vel.numpy()])
    np.testing.assert_allclose(analysis.kinetic_temperature(frames, m.numpy()), [t, 4 * t])

    from equignnmd.data.convert import _kinetic

    ke, t_convert = _kinetic(m.numpy(), vel.numpy().astype(np.float32))
    assert t_convert == pytest.approx(t, rel=1e-6)  # float32 input, as convert reads files
    assert ke == pytest.approx(float(physics.kinetic_energy(vel, m)[0]), rel=1e-6)

    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    two = torch.cat([b, b + 1])
    v_mb = thermostats.maxwell_boltzmann(m.repeat(2), [300.0, 650.0], gens, batch=two)
    torch.testing.assert_close(
        physics.kinetic_temperature(v_mb, m.repeat(2), two),
        torch.tensor([300.0, 650.0], dtype=torch.float64),
    )


def test_temperature_label_set_point_or_kinetic_temperature():
    vel, m, b = _batch()
    torch.testing.assert_close(
        physics.temperature_label(vel, m, b), physics.kinetic_temperature(vel, m, b)
    )
    label = physics.temperature_label(vel.float(), m, b, set_point_K=450.0)
    assert label.dtype == torch.float64
    torch.testing.assert_close(label, torch.tensor([450.0, 450.0], dtype=torch.float64))


def test_csvr_keeps_momentum_and_reaches_the_target():
    vel, m, b = _batch()
    drift = vel + torch.tensor([1.0, 0.0, -0.5], dtype=torch.float64)
    gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
    # τ = 0 resamples the internal kinetic energy at once; momentum is untouched
    out = thermostats.csvr(drift, m, b, 500.0, 10.0, tau_fs=0.0, generator=gens)
    torch.testing.assert_close(
        physics.net_momentum(out, m, b), physics.net_momentum(drift, m, b), rtol=1e-12, atol=1e-9
    )
    temps = torch.stack(
        [
            physics.kinetic_temperature(
                thermostats.csvr(drift, m, b, 500.0, 10.0, tau_fs=0.0, generator=gens), m, b
            )
            for _ in range(200)
        ]
    )
    # canonical: mean 500 K, relative std √(2/N_f)
    assert float(temps.mean()) == pytest.approx(500.0, rel=0.02)


def test_units_and_material_constants_pinned():
    assert units.FS_PER_PS == 1000.0
    assert units.fs_to_ps(20.0) == pytest.approx(0.02)
    assert units.ps_to_fs(0.5) == pytest.approx(500.0)
    assert float(units.fs_to_ps(torch.tensor([10.0]))[0]) == pytest.approx(0.01)
    al = material("Al")
    assert al is ALUMINIUM and list(MATERIALS) == ["Al"]
    assert (al.element, al.atomic_number, al.mass_amu, al.lattice_A, al.structure) == (
        "Al",
        13,
        26.9815,
        4.05,
        "fcc",
    )
    ref = ase.build.bulk("Al", "fcc", a=al.lattice_A, cubic=True)
    assert al.number_density_per_A3 == pytest.approx(len(ref) / ref.get_volume())
    assert al.nearest_neighbour_A == pytest.approx(2.8638, abs=1e-4)
    assert ref.get_masses()[0] == pytest.approx(al.mass_amu, abs=1e-3)  # ASE's own table
    assert al.with_lattice(4.0868).lattice_A == 4.0868 and al.lattice_A == 4.05
    with pytest.raises(ValueError, match="'Cu' is not a supported element.*Al"):
        material("Cu")


def test_material_reaches_generator_lammps_and_descriptors():
    cfg = load_config(GenerateConfig)
    assert cfg.material == ALUMINIUM
    assert (cfg.element, cfg.mass_amu, cfg.lattice_A) == ("Al", 26.9815, 4.05)
    assert MDSettings(potential="x").material == ALUMINIUM
    strained = load_config(GenerateConfig, overrides={"lattice_A": 4.0868})
    assert strained.material == ALUMINIUM.with_lattice(4.0868)
    # the CNA cutoff is 0.854 a0, as LAMMPS reads it
    assert descriptors.cna_cutoff_A() == 3.4587
    assert "cna/atom 3.458700" in " ".join(descriptors.lammps_compute_commands())
    assert descriptors.cna_cutoff_A(ALUMINIUM.with_lattice(4.0868)) == pytest.approx(
        3.4901, abs=1e-4
    )


def test_unknown_element_is_a_clear_config_error_not_species_zero():
    with pytest.raises(ConfigError, match=r"field 'element' = 'Xx'.*chemical element symbol"):
        load_config(GenerateConfig, overrides={"element": "Xx"})
    with pytest.raises(ConfigError, match=r"field 'element' = 'Cu,Cu'.*different element"):
        load_config(GenerateConfig, overrides={"element": "Cu,Cu"})
    with pytest.raises(ConfigError, match=r"field 'composition' = ''.*atom fractions of an"):
        load_config(GenerateConfig, overrides={"element": "Cu,Zr"})  # an alloy needs them
    cu = load_config(GenerateConfig, overrides={"element": "Cu"})  # any element generates
    assert (cu.material.atomic_number, cu.mass_amu, cu.lattice_A) == (29, 63.546, None)
