"""Trajectory analysis: structure, dynamics, thermodynamics and surrogate-vs-reference errors.

Everything is NumPy in / NumPy out and vectorised over atoms and pairs (loops only over frames,
segments or atom chunks, each iteration vectorised). Units are LAMMPS ``metal`` throughout:
positions Å, velocities Å/ps, masses amu, energies eV, temperatures K, times ps, frequencies THz.

Shapes: a trajectory is ``(F, N, 3)``; a single frame ``(N, 3)`` is accepted wherever it makes
sense. Cells are ``(3, 3)`` (one for all frames) or ``(F, 3, 3)``, rows are lattice vectors
(triclinic allowed). Periodic pair searches use vesin (the library behind
:func:`equignnmd.graph.neighbour_list`), which finds every periodic image within the cutoff, so
cutoffs larger than half the box are handled correctly.

Summary
-------
=============================  ===========================================================
``rdf``                        g(r) with periodic images, frame averaged
``number_density``             ⟨N/V⟩ over frames, Å⁻³
``running_coordination``       n(r) = ∫₀ʳ ρ g 4πr'² dr' at the upper edge of every bin
``coordination_shells``        neighbour counts inside given r windows
``rdf_l1``                     ∫|g1 − g2| dr / ∫|g2| dr (0 = identical)
``msd``                        mean squared displacement vs lag (FFT, all time origins)
``diffusion_coefficient``      D from a linear fit of the MSD, Å²/ps
``kinetic_energy``             ½ Σ m v² per frame, eV
``net_momentum``               Σ m v per frame, amu·Å/ps
``kinetic_temperature``        2 K_internal / ((3N − 3) k_B) per frame, K
``vdos``                       VDOS from the mass-weighted velocity autocorrelation, THz
``vdos_overlap``               ∫ min(d1, d2) df on a common grid, in [0, 1]
``per_atom_errors``            mean / RMS / max per-atom position and velocity errors
``volume``                     |det(cell)| per frame, Å³
``minimum_pair_distance``      shortest periodic interatomic distance, Å
``temperature_stats``          mean, std and linear drift of T(t)
``linear_drift``               slope of a least-squares line through y(t)
``plane_wave_temperatures``    kinetic temperature of the box's longest plane waves, K
``vdos_band_fractions``        share of the VDOS in frequency bands
``mean_frequency``             ⟨ν⟩ of a spectrum, THz
``site_drift``                 how far time-averaged sites move between two windows, Å
=============================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .units import fs_to_ps

MIN_SCORE_FRAMES = 50
"""Fewest trajectory frames (start frame included) a trajectory score or plot is computed
from, in every report (``evaluate``, ``fidelity``); below it a score reads "–"."""

_CHUNK_ELEMENTS = 1 << 22  # time-series elements per FFT chunk (bounds memory to ~100 MB)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _as_traj(x, name: str = "positions") -> tuple[np.ndarray, bool]:
    """(F, N, 3) float64 view of ``x`` and whether the input was a single (N, 3) frame."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[-1] == 3:
        return arr[None], True
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return arr, False
    raise ValueError(f"{name}: expected shape (N, 3) or (F, N, 3), got {arr.shape}")


def _as_cells(cell, n_frames: int) -> np.ndarray:
    """(F, 3, 3) float64 cells, broadcasting a single (3, 3) cell to every frame."""
    c = np.asarray(cell, dtype=np.float64)
    if c.shape == (3, 3):
        return np.broadcast_to(c, (n_frames, 3, 3))
    if c.ndim == 3 and c.shape[1:] == (3, 3):
        if c.shape[0] != n_frames:
            raise ValueError(f"cell: {c.shape[0]} cells for {n_frames} frames")
        return c
    raise ValueError(f"cell: expected shape (3, 3) or (F, 3, 3), got {c.shape}")


def _as_masses(masses, n_atoms: int) -> np.ndarray:
    """(N,) float64 masses (amu) from a scalar or an (N,) array."""
    m = np.asarray(masses, dtype=np.float64)
    if m.ndim == 0:
        return np.full(n_atoms, float(m))
    m = m.reshape(-1)
    if m.shape[0] != n_atoms:
        raise ValueError(f"masses: {m.shape[0]} masses for {n_atoms} atoms")
    return m


def _frame_indices(n_frames: int, frames) -> np.ndarray:
    """Frame indices selected by ``frames``: None (all), an int, a slice, indices or a mask."""
    if frames is None:
        return np.arange(n_frames)
    return np.atleast_1d(np.arange(n_frames)[frames])


def _wrap(pos: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Positions (N, 3) wrapped into the [0, 1) fractional box of ``cell`` (3, 3)."""
    frac = np.linalg.solve(cell.T, pos.T).T
    frac -= np.floor(frac)
    return frac @ cell


def _pair_distances(pos: np.ndarray, cell: np.ndarray, cutoff: float) -> np.ndarray:
    """Distances of every unordered periodic pair (i < j or image pairs) within ``cutoff``, Å."""
    from vesin import NeighborList

    nl = NeighborList(cutoff=float(cutoff), full_list=False)
    (d,) = nl.compute(
        points=np.ascontiguousarray(_wrap(pos, cell)),
        box=np.ascontiguousarray(cell),
        periodic=True,
        quantities="d",
    )
    return d


def _remove_com(x: np.ndarray, masses: np.ndarray | None) -> np.ndarray:
    """Subtract the (mass-weighted) centre of ``x`` (F, N, 3) over atoms, per frame."""
    if masses is None:
        return x - x.mean(axis=1, keepdims=True)
    w = masses / masses.sum()
    return x - np.einsum("n,fnk->fk", w, x)[:, None, :]


def _bin_edges_from_centres(r: np.ndarray) -> np.ndarray:
    r = np.asarray(r, dtype=np.float64)
    dr = r[1] - r[0]
    return np.concatenate([r - 0.5 * dr, [r[-1] + 0.5 * dr]])


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


# ---------------------------------------------------------------------------------------------
# structure
# ---------------------------------------------------------------------------------------------


def volume(cell) -> np.ndarray | float:
    """Cell volume |det(cell)|, Å³, per frame (a float for a single (3, 3) cell).

    A fixed-cell surrogate does not predict the volume: this is simply the input cell's volume
    (constant along a surrogate rollout). Use it for reference NPT data or for normalisation.
    """
    c = np.asarray(cell, dtype=np.float64)
    v = np.abs(np.linalg.det(c))
    return float(v) if c.ndim == 2 else v


def rdf(
    positions,
    cell,
    r_max: float = 8.0,
    n_bins: int = 200,
    frames=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Radial distribution function g(r) with periodic images, averaged over frames.

    Args:
        positions: (F, N, 3) or (N, 3), Å (need not be wrapped).
        cell: (F, 3, 3) or (3, 3) cells, rows are lattice vectors, Å (triclinic allowed).
        r_max: largest distance, Å. May exceed half the box: every periodic image is counted.
        n_bins: number of uniform bins on [0, r_max).
        frames: which frames to use: None (all), an int, a slice (e.g. ``slice(None, None, 10)``)
            or a sequence of indices.

    Returns:
        ``(r_centres, g)``, both (n_bins,). For each frame the pair count in bin k (both orders
        of every pair, i.e. neighbours summed over atoms) is divided by the ideal-gas count
        N · (N/V) · (4/3)π(r_hi³ − r_lo³) with that frame's volume V; frames are then averaged.
        With this ρ = N/V normalisation ``∑ ρ g_k ΔV_k`` over a peak is the exact neighbour count
        (see :func:`running_coordination`).
    """
    pos, _ = _as_traj(positions)
    cells = _as_cells(cell, pos.shape[0])
    idx = _frame_indices(pos.shape[0], frames)
    n_atoms = pos.shape[1]
    edges = np.linspace(0.0, float(r_max), int(n_bins) + 1)
    dr = edges[1] - edges[0]
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = np.zeros(int(n_bins))
    for f in idx:
        d = _pair_distances(pos[f], cells[f], r_max)
        k = (d / dr).astype(np.int64)
        counts = np.bincount(k[k < n_bins], minlength=n_bins)[:n_bins]
        rho = n_atoms / abs(np.linalg.det(cells[f]))
        g += 2.0 * counts / (n_atoms * rho * shell)  # half list → both orders
    g /= len(idx)
    return 0.5 * (edges[1:] + edges[:-1]), g


def number_density(positions, cell, frames=None) -> float:
    """Mean number density ⟨N/V⟩ over the selected frames, Å⁻³ (the ρ used by :func:`rdf`)."""
    pos, _ = _as_traj(positions)
    cells = _as_cells(cell, pos.shape[0])
    idx = _frame_indices(pos.shape[0], frames)
    return float(np.mean(pos.shape[1] / np.abs(np.linalg.det(cells[idx]))))


def running_coordination(r, g, density: float) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative neighbour count n(r) = ∫₀ʳ ρ g(r') 4πr'² dr'.

    Args:
        r: uniform bin centres from :func:`rdf`, Å.
        g: g(r) on those bins.
        density: ρ, Å⁻³ (:func:`number_density`).

    Returns:
        ``(r_upper, n)``: the upper edge of every bin, Å, and the mean number of neighbours
        closer than it. Exact bin shell volumes are used, so for the ρ = N/V normalisation of
        :func:`rdf` the counts are exact (e.g. 12 for the first FCC shell).
    """
    edges = _bin_edges_from_centres(r)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    return edges[1:], np.cumsum(density * np.asarray(g, dtype=np.float64) * shell)


def coordination_shells(r, g, density: float, bounds: Sequence[tuple[float, float]]) -> np.ndarray:
    """Neighbour counts in the windows ``bounds = [(r_lo, r_hi), ...]`` (Å), one per window.

    A bin belongs to a window when its centre lies in [r_lo, r_hi). Example for FCC Al
    (a0 = 4.05 Å): ``bounds=[(2.5, 3.4), (3.6, 4.5), (4.6, 5.3)]`` → [12, 6, 24].
    """
    r = np.asarray(r, dtype=np.float64)
    edges = _bin_edges_from_centres(r)
    per_bin = density * np.asarray(g, dtype=np.float64) * 4.0 / 3.0 * np.pi
    per_bin = per_bin * (edges[1:] ** 3 - edges[:-1] ** 3)
    return np.array([per_bin[(r >= lo) & (r < hi)].sum() for lo, hi in bounds])


def rdf_l1(r, g1, g2, r_min: float | None = None, r_max: float | None = None) -> float:
    """Normalised L1 distance between two RDFs on the same grid: ∫|g1 − g2| dr / ∫|g2| dr.

    ``g2`` is the reference. 0 means identical; 1 means as different as the reference is from
    zero (e.g. g1 ≡ 0); the score can exceed 1. Integrals are trapezoidal over ``r`` restricted
    to [r_min, r_max] when given.
    """
    r = np.asarray(r, dtype=np.float64)
    g1 = np.asarray(g1, dtype=np.float64)
    g2 = np.asarray(g2, dtype=np.float64)
    keep = np.ones_like(r, dtype=bool)
    if r_min is not None:
        keep &= r >= r_min
    if r_max is not None:
        keep &= r <= r_max
    den = _trapezoid(np.abs(g2[keep]), r[keep])
    if den <= 0.0:
        raise ValueError("rdf_l1: the reference g2 integrates to zero")
    return _trapezoid(np.abs(g1[keep] - g2[keep]), r[keep]) / den


def minimum_pair_distance(positions, cell, cutoff: float = 3.0) -> np.ndarray | float:
    """Shortest periodic interatomic distance, Å (a float for (N, 3), an (F,) array otherwise).

    Searches pairs within ``cutoff`` first; a frame with no pair that close is searched again
    with a doubled cutoff until it reaches the box's largest perpendicular width (then ``inf``,
    e.g. one atom alone). Periodic self-images count as pairs. Used by the stability guard.
    """
    pos, single = _as_traj(positions)
    cells = _as_cells(cell, pos.shape[0])
    out = np.empty(pos.shape[0])
    for f in range(pos.shape[0]):
        c = cells[f]
        vol = abs(np.linalg.det(c))
        widths = vol / np.linalg.norm(np.cross(c[[1, 2, 0]], c[[2, 0, 1]]), axis=1)
        rc, best = float(cutoff), np.inf
        while True:
            d = _pair_distances(pos[f], c, rc)
            if d.size:
                best = float(d.min())
                break
            if rc > widths.max():
                break
            rc *= 2.0
        out[f] = best
    return float(out[0]) if single else out


# ---------------------------------------------------------------------------------------------
# dynamics
# ---------------------------------------------------------------------------------------------


def msd(
    unwrapped_positions,
    masses=None,
    remove_com: bool = True,
    origins: str = "all",
) -> tuple[np.ndarray, np.ndarray]:
    """Mean squared displacement ⟨|r_i(t0 + τ) − r_i(t0)|²⟩ vs lag τ, Å².

    Args:
        unwrapped_positions: (F, N, 3) UNWRAPPED positions, Å, equally spaced in time.
        masses: (N,) amu (or scalar); only weights the centre-of-mass removal (equal weights when
            None).
        remove_com: subtract the centre-of-mass displacement of every frame first.
        origins: ``"all"`` averages over every time origin t0 (FFT / Wiener–Khinchin plus
            cumulative sums, O(F log F) per atom coordinate); ``"first"`` uses t0 = 0 only.

    Returns:
        ``(lags_frames, msd_A2)``, both (F,): lag in frames (multiply by the frame interval for
        ps) and the MSD averaged over atoms (unweighted) and origins.
    """
    x, _ = _as_traj(unwrapped_positions, "unwrapped_positions")
    n_frames, n_atoms = x.shape[:2]
    if remove_com:
        x = _remove_com(x, None if masses is None else _as_masses(masses, n_atoms))
    lags = np.arange(n_frames)
    if origins == "first":
        return lags, np.sum((x - x[:1]) ** 2, axis=2).mean(axis=1)
    if origins != "all":
        raise ValueError(f"msd: origins must be 'all' or 'first', got {origins!r}")

    cols = x.reshape(n_frames, -1)
    cols = cols - cols.mean(axis=0, keepdims=True)  # translation-invariant; better conditioning
    n_fft = 2 * n_frames  # zero padding → linear (not circular) correlation
    power = np.zeros(n_fft // 2 + 1)
    d2 = np.zeros(n_frames)
    step = max(1, _CHUNK_ELEMENTS // n_frames)
    for lo in range(0, cols.shape[1], step):
        c = cols[:, lo : lo + step]
        power += np.sum(np.abs(np.fft.rfft(c, n=n_fft, axis=0)) ** 2, axis=1)
        d2 += np.sum(c * c, axis=1)
    # A[m] = Σ_cols Σ_{t=0}^{F-1-m} x[t] x[t+m]
    acf = np.fft.irfft(power, n=n_fft)[:n_frames]
    # S[m] = Σ_cols Σ_{t=0}^{F-1-m} (x[t]² + x[t+m]²) from cumulative sums of d2
    cs = np.concatenate([[0.0], np.cumsum(d2)])
    s = cs[n_frames] - cs[lags] + cs[n_frames - lags]
    out = (s - 2.0 * acf) / ((n_frames - lags) * n_atoms)
    return lags, np.maximum(out, 0.0)


def diffusion_coefficient(t_ps, msd_A2, fit_range: tuple[float, float] | None = None) -> float:
    """Self-diffusion coefficient D = slope / 6 of a linear fit of MSD(t), Å²/ps.

    ``fit_range`` (ps) restricts the fit; by default the middle half of the lags is used (the
    first quarter is ballistic / transient, the last quarter has few time origins).
    """
    t = np.asarray(t_ps, dtype=np.float64)
    y = np.asarray(msd_A2, dtype=np.float64)
    if fit_range is None:
        keep = np.arange(t.size) >= t.size // 4
        keep &= np.arange(t.size) < 3 * t.size // 4 + 1
    else:
        keep = (t >= fit_range[0]) & (t <= fit_range[1])
    slope = np.polyfit(t[keep], y[keep], 1)[0]
    return float(slope / 6.0)


def _frames_as_systems(velocities, masses):
    """(F, N, 3) frames as one batch of F systems for :mod:`equignnmd.physics` (float64)."""
    import torch

    v, single = _as_traj(velocities, "velocities")
    n_frames, n_atoms = v.shape[:2]
    m = _as_masses(masses, n_atoms)
    vel = torch.from_numpy(np.ascontiguousarray(v, np.float64)).reshape(-1, 3)
    mass = torch.from_numpy(np.tile(m, n_frames))
    batch = torch.arange(n_frames).repeat_interleave(n_atoms)
    return vel, mass, batch, single


def kinetic_energy(velocities, masses) -> np.ndarray | float:
    """Kinetic energy ½ Σ m v² · MVV2E, eV, per frame (a float for a single (N, 3) frame)."""
    from . import physics

    vel, mass, batch, single = _frames_as_systems(velocities, masses)
    ke = physics.kinetic_energy(vel, mass, batch).numpy()
    return float(ke[0]) if single else ke


def net_momentum(velocities, masses) -> np.ndarray:
    """Total momentum Σ m v, amu·Å/ps: (F, 3), or (3,) for a single (N, 3) frame."""
    from . import physics

    vel, mass, batch, single = _frames_as_systems(velocities, masses)
    p = physics.net_momentum(vel, mass, batch).numpy()
    return p[0] if single else p


def kinetic_temperature(velocities, masses) -> np.ndarray | float:
    """Kinetic temperature per frame, K: :func:`equignnmd.physics.kinetic_temperature`
    (centre-of-mass motion removed, 3N − 3 degrees of freedom), the one definition the package
    uses everywhere.

    Args:
        velocities: (F, N, 3) or (N, 3), Å/ps.
        masses: (N,) or scalar, amu.

    Returns:
        (F,) temperatures, or a float for a single frame.
    """
    from . import physics

    vel, mass, batch, single = _frames_as_systems(velocities, masses)
    t = physics.kinetic_temperature(vel, mass, batch).numpy()
    return float(t[0]) if single else t


def vdos(
    velocities,
    masses,
    dt_fs: float,
    segment_frames: int | None = None,
    remove_com: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Vibrational density of states from the mass-weighted velocity autocorrelation.

    By Wiener–Khinchin the Fourier transform of C(τ) = Σ_i m_i ⟨v_i(t)·v_i(t + τ)⟩ is the
    mass-weighted power spectrum Σ_i m_i |FFT[w · v_i](f)|², computed here with a Hann window w.
    With ``segment_frames`` the trajectory is cut into Hann-windowed segments with 50 % overlap
    whose spectra are averaged (Welch): smoother, coarser resolution 1/(segment_frames · dt).

    Args:
        velocities: (F, N, 3), Å/ps, frames ``dt_fs`` apart.
        masses: (N,) or scalar, amu.
        dt_fs: time between frames, fs.
        segment_frames: Welch segment length in frames (None: one window over all frames).
        remove_com: subtract the centre-of-mass velocity per frame (drops a spurious DC peak).

    Returns:
        ``(frequency_THz, dos)``: one-sided frequencies 0 … 1/(2 dt) and the DOS normalised to
        unit area (trapezoid), 1/THz.
    """
    v, _ = _as_traj(velocities, "velocities")
    n_frames, n_atoms = v.shape[:2]
    m = _as_masses(masses, n_atoms)
    if remove_com:
        v = _remove_com(v, m)
    seg = n_frames if segment_frames is None else int(min(segment_frames, n_frames))
    if seg < 2:
        raise ValueError("vdos: need at least 2 frames per segment")
    starts = range(0, n_frames - seg + 1, max(1, seg // 2))
    window = np.hanning(seg + 2)[1:-1]  # no zero end points (keeps short segments useful)
    weights = np.repeat(m, 3)  # one weight per atom coordinate
    cols = v.reshape(n_frames, -1)
    power = np.zeros(seg // 2 + 1)
    step = max(1, _CHUNK_ELEMENTS // seg)
    for t0 in starts:
        for lo in range(0, cols.shape[1], step):
            c = cols[t0 : t0 + seg, lo : lo + step] * window[:, None]
            spec = np.abs(np.fft.rfft(c, axis=0)) ** 2
            power += spec @ weights[lo : lo + step]
    freq = np.fft.rfftfreq(seg, d=fs_to_ps(dt_fs))  # 1/ps = THz
    area = _trapezoid(power, freq)
    return freq, power / area if area > 0 else power


def vdos_overlap(f1, d1, f2, d2) -> float:
    """Overlap ∫ min(d1, d2) df of two spectra, in [0, 1] (1 = identical shapes).

    Both spectra are linearly interpolated onto one grid (the union of their ranges, with the
    finer of the two spacings; zero outside each input's range) and renormalised to unit area
    there, so inputs with different resolutions or normalisations can be compared.
    """
    f1, d1, f2, d2 = (np.asarray(a, dtype=np.float64) for a in (f1, d1, f2, d2))
    step = min(np.min(np.diff(f1)), np.min(np.diff(f2)))
    lo, hi = min(f1[0], f2[0]), max(f1[-1], f2[-1])
    grid = np.linspace(lo, hi, int(round((hi - lo) / step)) + 1)
    a = np.interp(grid, f1, np.clip(d1, 0.0, None), left=0.0, right=0.0)
    b = np.interp(grid, f2, np.clip(d2, 0.0, None), left=0.0, right=0.0)
    na, nb = _trapezoid(a, grid), _trapezoid(b, grid)
    if na <= 0.0 or nb <= 0.0:
        return 0.0
    return float(np.clip(_trapezoid(np.minimum(a / na, b / nb), grid), 0.0, 1.0))


# ---------------------------------------------------------------------------------------------
# surrogate vs reference
# ---------------------------------------------------------------------------------------------


def per_atom_errors(pred_pos, ref_pos, pred_vel=None, ref_vel=None, cell=None) -> dict:
    """Per-atom errors of a prediction against a reference.

    Position error of atom i: e_i = |Δr_i| (Å), with Δr = pred − ref; when ``cell`` ((3, 3) or
    (F, 3, 3)) is given, Δr is minimum-imaged (fractional rounding; valid when errors are
    smaller than half the box) so wrapped positions can be compared. Velocity error:
    |Δv_i| (Å/ps).

    Returns a dict of floats over all atoms and frames:
    ``pos_mean`` = mean e_i, ``pos_rmse`` = sqrt(mean e_i²), ``pos_max`` (Å); with velocities
    also ``vel_mean``, ``vel_rmse``, ``vel_max`` (Å/ps). For (F, N, 3) inputs
    ``pos_mean_per_frame`` (and ``vel_mean_per_frame``) arrays (F,) are added.
    """
    p, single = _as_traj(pred_pos, "pred_pos")
    r, _ = _as_traj(ref_pos, "ref_pos")
    if p.shape != r.shape:
        raise ValueError(f"per_atom_errors: shapes {p.shape} and {r.shape} differ")
    delta = p - r
    if cell is not None:
        cells = _as_cells(cell, p.shape[0])
        frac = np.einsum("fnl,flk->fnk", delta, np.linalg.inv(cells))  # delta = frac @ cell
        frac -= np.round(frac)
        delta = np.einsum("fnk,fkl->fnl", frac, cells)
    out: dict = {}

    def summarise(err: np.ndarray, key: str) -> None:
        out[f"{key}_mean"] = float(err.mean())
        out[f"{key}_rmse"] = float(np.sqrt(np.mean(err**2)))
        out[f"{key}_max"] = float(err.max())
        if not single:
            out[f"{key}_mean_per_frame"] = err.mean(axis=1)

    summarise(np.linalg.norm(delta, axis=-1), "pos")
    if pred_vel is not None and ref_vel is not None:
        pv, _ = _as_traj(pred_vel, "pred_vel")
        rv, _ = _as_traj(ref_vel, "ref_vel")
        summarise(np.linalg.norm(pv - rv, axis=-1), "vel")
    return out


def temperature_stats(times_ps, temps) -> dict:
    """Mean, standard deviation (population) and linear drift of a temperature series.

    Returns ``{"mean_K", "std_K", "drift_K_per_ps", "n"}``; the drift is the slope of a
    least-squares line through T(t) (0 for fewer than two points).
    """
    t = np.asarray(times_ps, dtype=np.float64).reshape(-1)
    y = np.asarray(temps, dtype=np.float64).reshape(-1)
    drift = float(np.polyfit(t, y, 1)[0]) if y.size >= 2 and np.ptp(t) > 0 else 0.0
    return {
        "mean_K": float(y.mean()),
        "std_K": float(y.std()),
        "drift_K_per_ps": drift,
        "n": y.size,
    }


def linear_drift(times, values) -> float:
    """Slope of the least-squares line through ``values(times)`` (units of values per unit
    of time; 0 for fewer than two points)."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    y = np.asarray(values, dtype=np.float64).reshape(-1)
    return float(np.polyfit(t, y, 1)[0]) if y.size >= 2 and np.ptp(t) > 0 else 0.0


def plane_wave_vectors(cell, max_shell: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Wavevectors k = 2π (n₁ b₁ + n₂ b₂ + n₃ b₃) of the box with integer n, |n|² ≤
    ``max_shell``, one of each ±k pair. Returns ``(k (K, 3) 1/Å, shell (K,) = |n|²)``."""
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    recip = 2.0 * np.pi * np.linalg.inv(cell).T  # rows b_i with a_i · b_j = 2π δ_ij
    m = int(np.floor(np.sqrt(max_shell)))
    rng = np.arange(-m, m + 1)
    n = np.stack(np.meshgrid(rng, rng, rng, indexing="ij"), axis=-1).reshape(-1, 3)
    shell = np.sum(n * n, axis=1)
    # one of each ±n: the first non-zero component positive
    first = np.array([row[np.nonzero(row)[0][0]] if row.any() else 0 for row in n])
    keep = (shell > 0) & (shell <= max_shell) & (first > 0)
    return n[keep] @ recip, shell[keep]


def plane_wave_temperatures(
    positions, velocities, cell, masses, max_shell: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Kinetic temperature carried by the box's longest plane waves, per shell of |n|².

    For a wavevector k of the box, the mass-weighted velocity amplitude
    A_k = Σ_i √m_i (v_i − v_com) e^{−i k·r_i} has ⟨|A_k|²⟩ = 3 N k_B T (per 3 polarisations)
    when every mode holds k_B T/2 of kinetic energy (equipartition), so

        T_k = ⟨|A_k|²⟩ / (3 N k_B)

    equals the kinetic temperature in equilibrium. A surrogate that pumps energy into the
    slowest collective modes (long transverse sound waves) shows T_k ≫ T in the first shell.

    Args:
        positions: (F, N, 3) Å (wrapped or unwrapped: k is commensurate with the box);
        velocities: (F, N, 3) Å/ps; cell (3, 3) Å; masses (N,) or scalar amu.
        max_shell: largest |n|² (1: the 3 longest waves of a cubic box; 3: 13 wavevectors).

    Returns:
        ``(shells, T_K)``: the shells |n|² present (S,) and the frame- and shell-averaged T_k
        (S,), K.
    """
    from .units import KB_EV_PER_K, MVV2E

    x, _ = _as_traj(positions, "positions")
    v, _ = _as_traj(velocities, "velocities")
    n_frames, n_atoms = v.shape[:2]
    m = _as_masses(masses, n_atoms)
    v = _remove_com(v, m)
    k, shell = plane_wave_vectors(cell, max_shell)
    power = np.zeros(len(k))
    step = max(1, _CHUNK_ELEMENTS // max(1, n_atoms * len(k)))
    w = np.sqrt(m)[None, :, None]
    for lo in range(0, n_frames, step):
        phase = np.exp(-1j * (x[lo : lo + step] @ k.T))  # (f, N, K)
        amp = np.einsum("fnk,fnc->fkc", phase, w * v[lo : lo + step])  # (f, K, 3)
        power += np.sum(np.abs(amp) ** 2, axis=(0, 2))
    t_k = power / n_frames * MVV2E / (3.0 * n_atoms * KB_EV_PER_K)
    shells = np.unique(shell)
    return shells, np.array([t_k[shell == s].mean() for s in shells])


def vdos_band_fractions(frequency_THz, dos, edges_THz) -> np.ndarray:
    """Share of the VDOS area in each band [edges[b], edges[b+1]) (the last band is closed),
    of the whole spectrum's area; (B,)."""
    f = np.asarray(frequency_THz, dtype=np.float64)
    d = np.clip(np.asarray(dos, dtype=np.float64), 0.0, None)
    total = _trapezoid(d, f)
    out = []
    for lo, hi in zip(edges_THz[:-1], edges_THz[1:]):
        grid = np.linspace(lo, hi, 64)
        out.append(_trapezoid(np.interp(grid, f, d, right=0.0), grid))
    return np.array(out) / total if total > 0 else np.zeros(len(out))


def mean_frequency(frequency_THz, dos) -> float:
    """⟨ν⟩ = ∫ ν D(ν) dν / ∫ D(ν) dν of a spectrum, THz."""
    f = np.asarray(frequency_THz, dtype=np.float64)
    d = np.clip(np.asarray(dos, dtype=np.float64), 0.0, None)
    area = _trapezoid(d, f)
    return float(_trapezoid(f * d, f) / area) if area > 0 else float("nan")


def site_drift(unwrapped_positions, window_frames: int, masses=None) -> float:
    """Mean distance, Å, between every atom's average position over the first and over the
    last ``window_frames`` frames (centre of mass removed): 0 ± thermal noise for a solid
    whose atoms stay on their sites, growing for creep or diffusion."""
    x, _ = _as_traj(unwrapped_positions, "unwrapped_positions")
    n_frames, n_atoms = x.shape[:2]
    x = _remove_com(x, None if masses is None else _as_masses(masses, n_atoms))
    w = int(max(1, min(window_frames, n_frames // 2)))
    first, last = x[:w].mean(axis=0), x[-w:].mean(axis=0)
    return float(np.linalg.norm(last - first, axis=1).mean())


__all__ = [
    "MIN_SCORE_FRAMES",
    "coordination_shells",
    "diffusion_coefficient",
    "kinetic_energy",
    "kinetic_temperature",
    "linear_drift",
    "mean_frequency",
    "minimum_pair_distance",
    "msd",
    "net_momentum",
    "number_density",
    "per_atom_errors",
    "plane_wave_temperatures",
    "plane_wave_vectors",
    "rdf",
    "rdf_l1",
    "running_coordination",
    "site_drift",
    "temperature_stats",
    "vdos",
    "vdos_band_fractions",
    "vdos_overlap",
    "volume",
]
