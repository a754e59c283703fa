"""Tests of equignnmd.analysis and equignnmd.plots against exact answers (fast, < 20 s)."""

from __future__ import annotations

import ase.build
import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from equignnmd import analysis as an
from equignnmd import plots
from equignnmd.materials import ALUMINIUM
from equignnmd.units import KB_EV_PER_K, MVV2E

AL_MASS_AMU = ALUMINIUM.mass_amu
A0 = ALUMINIUM.lattice_A
SHELLS = [(A0 / np.sqrt(2), 12), (A0, 6), (A0 * np.sqrt(1.5), 24)]  # 2.864, 4.05, 4.960 Å
WINDOWS = [(2.5, 3.4), (3.6, 4.5), (4.6, 5.3)]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fcc_cubic(reps=5):
    return ase.build.bulk("Al", "fcc", a=A0, cubic=True).repeat((reps, reps, reps))


def fcc_primitive(reps=8):
    return ase.build.bulk("Al", "fcc", a=A0).repeat((reps, reps, reps))  # triclinic cell


def mb_velocities(rng, n, temperature, mass=AL_MASS_AMU):
    sigma = np.sqrt(KB_EV_PER_K * temperature / (mass * MVV2E))  # Å/ps
    return rng.normal(scale=sigma, size=(n, 3))


# --------------------------------------------------------------------------------------------
# structure
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("atoms", [fcc_cubic(), fcc_primitive()], ids=["cubic", "triclinic"])
def test_rdf_perfect_fcc_peaks_and_coordination(atoms):
    r, g = an.rdf(atoms.positions, atoms.cell.array, r_max=8.0, n_bins=200)
    dr = r[1] - r[0]
    assert r.shape == g.shape == (200,)
    for dist, _ in SHELLS:
        near = np.abs(r - dist) < 0.3
        peak = r[near][np.argmax(g[near])]
        assert abs(peak - dist) <= 0.5 * dr + 1e-9
    assert np.all(g[r < 2.7] == 0.0)  # nothing closer than the first shell
    rho = an.number_density(atoms.positions, atoms.cell.array)
    counts = an.coordination_shells(r, g, rho, WINDOWS)
    np.testing.assert_allclose(counts, [n for _, n in SHELLS], atol=1e-9)
    r_up, n_run = an.running_coordination(r, g, rho)
    assert n_run[np.searchsorted(r_up, 3.4)] == pytest.approx(12.0)
    assert n_run[np.searchsorted(r_up, 4.5)] == pytest.approx(18.0)


def test_rdf_matches_brute_force_on_rattled_triclinic_trajectory():
    rng = np.random.default_rng(3)
    base = fcc_cubic(3)
    frames, cells = [], []
    for _ in range(3):
        a = base.copy()
        a.set_cell(base.cell.array + rng.normal(scale=0.4, size=(3, 3)), scale_atoms=True)
        a.rattle(0.2, seed=int(rng.integers(1000)))
        a.positions += 2.0  # some atoms outside the cell
        frames.append(a.positions.copy())
        cells.append(a.cell.array.copy())
    r_max, n_bins = 9.0, 90  # r_max above half the box: periodic images must be counted
    r, g = an.rdf(np.array(frames), np.array(cells), r_max=r_max, n_bins=n_bins)
    edges = np.linspace(0, r_max, n_bins + 1)
    shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    ref = np.zeros(n_bins)
    for pos, cell in zip(frames, cells):
        a = ase.Atoms("Al" * len(pos), positions=pos, cell=cell, pbc=True)
        d = neighbor_list("d", a, r_max)
        n = len(pos)
        ref += np.histogram(d, bins=edges)[0] / (n * n / a.get_volume() * shell)
    np.testing.assert_allclose(g, ref / 3, rtol=1e-12, atol=1e-12)
    # frame selection
    r1, g1 = an.rdf(np.array(frames), np.array(cells), r_max=r_max, n_bins=n_bins, frames=[1])
    r2, g2 = an.rdf(frames[1], cells[1], r_max=r_max, n_bins=n_bins)
    np.testing.assert_array_equal(g1, g2)


def test_rdf_l1():
    r = np.linspace(0.02, 8, 200)
    g = 1 + np.sin(r) ** 2
    assert an.rdf_l1(r, g, g) == 0.0
    assert an.rdf_l1(r, np.zeros_like(g), g) == pytest.approx(1.0)
    assert an.rdf_l1(r, 1.1 * g, g) == pytest.approx(0.1)


def test_minimum_pair_distance():
    atoms = fcc_cubic()
    cell = atoms.cell.array
    assert an.minimum_pair_distance(atoms.positions, cell) == pytest.approx(A0 / np.sqrt(2))
    pos = atoms.positions.copy()
    pos[1] = pos[0] + 0.9 * np.ones(3) / np.sqrt(3)
    assert an.minimum_pair_distance(pos, cell) == pytest.approx(0.9)
    traj = np.stack([atoms.positions, pos])
    np.testing.assert_allclose(an.minimum_pair_distance(traj, cell), [A0 / np.sqrt(2), 0.9])
    # nothing within the first 3 Å cutoff → larger search (simple cubic, a = 5 Å)
    sc = ase.Atoms("Al", positions=[[0, 0, 0]], cell=np.eye(3) * 5.0, pbc=True).repeat(3)
    assert an.minimum_pair_distance(sc.positions, sc.cell.array) == pytest.approx(5.0)


def test_volume():
    cell = fcc_cubic().cell.array
    assert an.volume(cell) == pytest.approx((5 * A0) ** 3)
    np.testing.assert_allclose(
        an.volume(np.stack([cell, 2 * cell])), np.array([1, 8]) * (5 * A0) ** 3
    )


# --------------------------------------------------------------------------------------------
# dynamics
# --------------------------------------------------------------------------------------------


def test_msd_straight_line_motion_is_ballistic():
    rng = np.random.default_rng(0)
    n, f, dt = 64, 50, 0.01
    t = np.arange(f) * dt
    x0 = rng.uniform(0, 20, size=(n, 3))
    v = rng.normal(size=(n, 3))
    traj = x0 + t[:, None, None] * v
    lags, m = an.msd(traj, remove_com=False)
    np.testing.assert_array_equal(lags, np.arange(f))
    expected = np.mean(np.sum(v**2, axis=1)) * (lags * dt) ** 2
    np.testing.assert_allclose(m, expected, rtol=1e-9, atol=1e-12)
    _, m_first = an.msd(traj, remove_com=False, origins="first")
    np.testing.assert_allclose(m_first, expected, rtol=1e-9, atol=1e-12)
    # random velocities whose centre of mass is removed: COM removal changes nothing
    masses = rng.uniform(1, 50, size=n)
    v_free = v - (masses @ v) / masses.sum()
    traj = x0 + t[:, None, None] * v_free
    _, m_com = an.msd(traj, masses=masses, remove_com=True)
    expected = np.mean(np.sum(v_free**2, axis=1)) * (lags * dt) ** 2
    np.testing.assert_allclose(m_com, expected, rtol=1e-9, atol=1e-12)


def test_msd_all_origins_matches_brute_force_random_walk():
    rng = np.random.default_rng(1)
    traj = np.cumsum(rng.normal(scale=0.1, size=(40, 10, 3)), axis=0)
    _, m = an.msd(traj, remove_com=False)
    ref = [np.mean(np.sum((traj[k:] - traj[: -k or None]) ** 2, axis=2)) for k in range(40)]
    np.testing.assert_allclose(m, ref, rtol=1e-9, atol=1e-12)
    # diffusion: MSD = 6 D t for this walk has D = 3·0.1² / (6 dt); check on a long one
    walk = np.cumsum(rng.normal(scale=0.1, size=(2000, 200, 3)), axis=0)
    lags, m = an.msd(walk, remove_com=False)
    d = an.diffusion_coefficient(lags * 0.01, m)
    assert d == pytest.approx(3 * 0.01 / (6 * 0.01), rel=0.1)


def test_kinetic_temperature_maxwell_boltzmann():
    rng = np.random.default_rng(42)
    n = 4000
    v = mb_velocities(rng, n, 300.0)
    t = an.kinetic_temperature(v, AL_MASS_AMU)
    assert isinstance(t, float)
    assert t == pytest.approx(300.0, rel=0.03)
    # the centre-of-mass motion is not thermal: removed, 3N − 3 degrees of freedom
    v_free = v - v.mean(axis=0)
    t_free = an.kinetic_temperature(v_free, AL_MASS_AMU)
    assert an.kinetic_temperature(v_free + [3.0, -1.0, 2.0], AL_MASS_AMU) == pytest.approx(
        t_free, rel=1e-12
    )
    ke_free = an.kinetic_energy(v_free, AL_MASS_AMU)
    assert t_free == pytest.approx(2 * ke_free / ((3 * n - 3) * KB_EV_PER_K), rel=1e-12)
    # trajectory input and energy / momentum helpers
    traj = np.stack([v_free, 2 * v_free])
    temps = an.kinetic_temperature(traj, np.full(n, AL_MASS_AMU))
    np.testing.assert_allclose(temps, [t_free, 4 * t_free])
    ke = an.kinetic_energy(traj, AL_MASS_AMU)
    np.testing.assert_allclose(ke, 0.5 * (3 * n - 3) * KB_EV_PER_K * temps)
    np.testing.assert_allclose(an.net_momentum(traj, AL_MASS_AMU), 0.0, atol=1e-9)
    assert an.kinetic_energy([[1.0, 0, 0]], 2.0) == pytest.approx(MVV2E)
    np.testing.assert_allclose(an.net_momentum([[1.0, 2, 3], [1, 0, 0]], [2.0, 1.0]), [3, 4, 6])


def harmonic_velocities(freq_thz, n_frames=2000, dt_fs=5.0, n_atoms=30, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) * dt_fs / 1000.0  # ps
    phase = rng.uniform(0, 2 * np.pi, size=(n_atoms, 3))
    amp = rng.uniform(0.5, 2.0, size=(n_atoms, 3))
    return amp * np.cos(2 * np.pi * freq_thz * t[:, None, None] + phase)


def test_vdos_harmonic_oscillators():
    dt = 5.0
    masses = np.random.default_rng(1).uniform(10, 30, size=30)
    f, d = an.vdos(harmonic_velocities(5.0, dt_fs=dt), masses, dt_fs=dt)
    assert f[-1] == pytest.approx(100.0)  # Nyquist for 5 fs
    assert f[np.argmax(d)] == pytest.approx(5.0, abs=f[1])
    assert np.sum(0.5 * (d[1:] + d[:-1]) * np.diff(f)) == pytest.approx(1.0)
    fw, dw = an.vdos(harmonic_velocities(5.0, dt_fs=dt), masses, dt_fs=dt, segment_frames=400)
    assert fw[np.argmax(dw)] == pytest.approx(5.0, abs=fw[1])
    assert an.vdos_overlap(f, d, f, d) == pytest.approx(1.0)
    f_b, d_b = an.vdos(harmonic_velocities(5.0, dt_fs=dt, seed=5), masses, dt_fs=dt)
    assert an.vdos_overlap(f, d, f_b, d_b) > 0.9  # same physics, other phases and amplitudes
    f8, d8 = an.vdos(harmonic_velocities(8.0, dt_fs=dt, seed=2), masses, dt_fs=dt)
    assert 0.0 <= an.vdos_overlap(f, d, f8, d8) < 0.5


# --------------------------------------------------------------------------------------------
# errors and statistics
# --------------------------------------------------------------------------------------------


def test_per_atom_errors():
    cell = np.eye(3) * 10.0
    ref = np.array([[0.1, 5.0, 5.0], [5.0, 5.0, 5.0]])
    pred = np.array([[9.9, 5.0, 5.0], [5.0, 5.0, 5.6]])  # atom 0 crossed the boundary
    e = an.per_atom_errors(pred, ref, cell=cell)
    assert e["pos_mean"] == pytest.approx(0.4)
    assert e["pos_rmse"] == pytest.approx(np.sqrt((0.04 + 0.36) / 2))
    assert e["pos_max"] == pytest.approx(0.6)
    vel = {"pred_vel": np.ones((1, 2, 3)), "ref_vel": np.zeros((1, 2, 3))}
    e = an.per_atom_errors(pred[None], ref[None], **vel)
    assert e["pos_mean"] == pytest.approx((9.8 + 0.6) / 2)  # no cell: no minimum image
    assert e["vel_mean"] == pytest.approx(np.sqrt(3))
    assert e["vel_rmse"] == pytest.approx(np.sqrt(3))
    assert e["pos_mean_per_frame"].shape == (1,)


def test_temperature_stats():
    t = np.linspace(0, 10, 101)
    s = an.temperature_stats(t, 300 + 2 * t + np.sin(7 * t))
    assert s["drift_K_per_ps"] == pytest.approx(2.0, abs=0.05)
    assert s["mean_K"] == pytest.approx(310.0, abs=0.2)
    assert s["n"] == 101
    s = an.temperature_stats(t, np.full_like(t, 300.0))
    assert s["std_K"] == pytest.approx(0.0, abs=1e-9)
    assert s["drift_K_per_ps"] == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------


def test_plots_write_png(tmp_path):
    x = np.linspace(0.1, 8, 50)
    curves = {"reference": (x, 1 + np.sin(x)), "surrogate": (x, 1 + np.cos(x))}
    paths = [
        plots.plot_rdf(tmp_path / "rdf.png", curves),
        plots.plot_msd(tmp_path / "msd.png", curves),
        plots.plot_temperature(tmp_path / "temp.png", curves, target=300.0),
        plots.plot_vdos(tmp_path / "vdos.png", curves),
        plots.plot_error_vs_dt(
            tmp_path / "sub" / "err.png",
            {"egnn": ([1, 2, 4, 8], [0.01, 0.02, 0.05, 0.2]), "gnn": ([1, 2, 4], [0.02, 0.1, 1])},
        ),
    ]
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 1000
        assert data[:8] == PNG_SIGNATURE


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]


@pytest.mark.parametrize("kind", ["rdf", "msd", "temperature", "energy", "vdos"])
def test_a_series_too_short_says_so_instead_of_drawing_lines(tmp_path, kind):
    """3 frames with a 50-frame minimum: no line, the text "too short to plot (3 frames)";
    the same call with 50 frames draws both curves and no such text."""
    plot = getattr(plots, f"plot_{kind}")
    for n, short in ((3, True), (50, False)):
        x = np.linspace(0.0, 1.0, n)
        curves = {"LAMMPS": (x, 1 + x), "surrogate": (x, 1 + 2 * x)}
        path, fig = plot(
            tmp_path / f"{kind}_{n}.png", curves, frames=n, min_frames=50, return_figure=True
        )
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        texts, (ax,) = _texts(fig), fig.axes
        if short:
            assert any("too short to plot (3 frames)" in t for t in texts), texts
            assert not ax.get_lines() or all(len(line.get_xdata()) <= 2 for line in ax.get_lines())
            assert ax.get_legend() is None
        else:
            assert not any("too short" in t for t in texts), texts
            assert {line.get_label() for line in ax.get_lines()} >= {"LAMMPS", "surrogate"}


# ------------------------------------------------------------------ fidelity observables
def _mb_frames(n_frames=40, cells=3, T=400.0, seed=0):
    atoms = ase.build.bulk("Al", "fcc", a=4.07, cubic=True).repeat((cells, cells, cells))
    rng = np.random.default_rng(seed)
    n = len(atoms)
    sigma = np.sqrt(KB_EV_PER_K * T / (ALUMINIUM.mass_amu * MVV2E))
    pos = atoms.positions[None] + 0.05 * rng.standard_normal((n_frames, n, 3))
    vel = sigma * rng.standard_normal((n_frames, n, 3))
    return pos, vel, atoms.cell.array, ALUMINIUM.mass_amu


def test_plane_wave_vectors_of_a_cubic_box():
    cell = np.eye(3) * 12.0
    k, shell = an.plane_wave_vectors(cell, max_shell=3)
    assert sorted(np.bincount(shell).tolist()[1:]) == [3, 4, 6]  # ±pairs counted once
    np.testing.assert_allclose(np.linalg.norm(k[shell == 1], axis=1), 2 * np.pi / 12.0)


def test_plane_wave_temperatures_equipartition_and_a_planted_long_wave():
    pos, vel, cell, m = _mb_frames()
    temps = an.kinetic_temperature(vel, m)
    shells, t_k = an.plane_wave_temperatures(pos, vel, cell, m, max_shell=3)
    assert shells.tolist() == [1, 2, 3]
    # uncorrelated velocities: every long wave holds k_B T / 2 per mode (40 frames × 3-6
    # vectors × 3 polarisations: a few % noise)
    np.testing.assert_allclose(t_k / temps.mean(), 1.0, atol=0.25)
    # add a transverse wave along x, polarised along y, with the box's longest wavelength
    L = cell[0, 0]
    wave = np.zeros_like(vel)
    wave[..., 1] = 3.0 * np.cos(2 * np.pi * pos[..., 0] / L)
    _, t_wave = an.plane_wave_temperatures(pos, vel + wave, cell, m, max_shell=1)
    assert t_wave[0] > 3 * t_k[0]  # one of the three shell-1 waves carries ~10× k_B T


def test_vdos_bands_site_drift_and_mean_frequency():
    f = np.linspace(0, 10, 101)
    d = np.where((f > 4) & (f < 6), 1.0, 0.0)
    bands = an.vdos_band_fractions(f, d, (0, 2, 4, 6, 8, 10))
    assert bands.sum() == pytest.approx(1.0, abs=0.02)
    assert bands[2] > 0.95
    assert an.mean_frequency(f, d) == pytest.approx(5.0, abs=0.05)
    pos, _, _, m = _mb_frames(n_frames=20)
    assert an.site_drift(pos, 5, m) < 0.08  # thermal noise of 5-frame means: ~0.05 Å
    moved = pos.copy()
    moved[10:, :54, 2] += 0.5  # half the atoms hop 0.5 Å along z (the COM moves 0.25 Å)
    assert an.site_drift(moved, 5, m) == pytest.approx(0.25, abs=0.04)
    assert an.linear_drift([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
