"""Stochastic velocity operations: Maxwell–Boltzmann draws and thermostats (state in, state out).

Every function works on a *batch* of systems at once: ``vel`` (N, 3) Å/ps, ``masses`` (N,) amu
and ``batch`` (N,) the system index of every atom (sorted or not; ``None`` for one system).
Units are LAMMPS ``metal`` throughout (Å, ps, eV, amu, K). Nothing is modified in place.
Kinetic energies, temperatures and momenta come from :mod:`equignnmd.physics` (3N − 3 degrees
of freedom of the motion relative to the centre of mass).

Randomness comes from ``generator``: one ``torch.Generator`` for the whole batch, or a list
with one generator per system. With one generator per system, system ``r`` draws exactly the
numbers it would draw alone, so a replica gives the same trajectory in a batch of several as
when run by itself (:mod:`equignnmd.rollout` relies on this).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .physics import (
    degrees_of_freedom,
    internal_kinetic_energy,
    kinetic_temperature,
    num_systems,
    per_system,
    remove_net_momentum,
    system_index,
)
from .units import KB_EV_PER_K, MVV2E, fs_to_ps

GeneratorLike = torch.Generator | Sequence[torch.Generator] | None

__all__ = ["csvr", "langevin", "make_thermostat", "maxwell_boltzmann"]


# --------------------------------------------------------------------------------- randomness
def _generators(generator: GeneratorLike, num: int) -> list[torch.Generator | None] | None:
    if generator is None or isinstance(generator, torch.Generator):
        return None
    gens = list(generator)
    if len(gens) != num:
        raise ValueError(f"got {len(gens)} generators for {num} systems; expected one per system")
    return gens


def _randn_atoms(
    shape_tail: tuple[int, ...], graph: torch.Tensor, num: int, generator: GeneratorLike, like
) -> torch.Tensor:
    """Standard normals of shape (N, *shape_tail); per-system streams if ``generator`` is a list."""
    n = graph.shape[0]
    gens = _generators(generator, num)
    if gens is None:
        return torch.randn(
            (n, *shape_tail), generator=generator, dtype=like.dtype, device=like.device
        )
    out = torch.empty((n, *shape_tail), dtype=like.dtype, device=like.device)
    # one draw per system (not per atom): each system's stream is independent of the others
    for g in range(num):
        idx = (graph == g).nonzero().squeeze(-1)
        out[idx] = torch.randn(
            (idx.numel(), *shape_tail), generator=gens[g], dtype=like.dtype, device=like.device
        )
    return out


def _randn_systems(
    count: torch.Tensor, num: int, generator: GeneratorLike, like
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per system: one normal R1 and the sum of ``count[g]`` squared normals (chi², exact)."""
    gens = _generators(generator, num)
    r1 = torch.empty(num, dtype=like.dtype, device=like.device)
    chi2 = torch.empty(num, dtype=like.dtype, device=like.device)
    for g in range(num):
        gen = gens[g] if gens is not None else generator
        z = torch.randn(int(count[g]) + 1, generator=gen, dtype=like.dtype, device=like.device)
        r1[g] = z[0]
        chi2[g] = (z[1:] * z[1:]).sum()
    return r1, chi2


# --------------------------------------------------------------------------------- initial state
def maxwell_boltzmann(
    masses: torch.Tensor,
    temperature_K,
    generator: GeneratorLike = None,
    batch: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Maxwell–Boltzmann velocities (N, 3) Å/ps with zero net momentum per system.

    Rescaled so that :func:`~equignnmd.physics.kinetic_temperature` equals
    ``temperature_K`` (scalar or (B,)) exactly; 0 K gives zeros.
    """
    dtype = dtype or (masses.dtype if masses.is_floating_point() else torch.float64)
    m = masses.to(dtype)
    graph = system_index(batch, m.shape[0], m.device)
    num = num_systems(graph)
    target = per_system(temperature_K, num, m)
    if bool((target < 0).any()):
        raise ValueError(f"temperature_K must be ≥ 0 K, got {target.tolist()}")
    z = _randn_atoms((3,), graph, num, generator, m)
    sigma = torch.sqrt(KB_EV_PER_K * target[graph] / (m * MVV2E))  # Å/ps per component
    vel = remove_net_momentum(z * sigma.unsqueeze(-1), m, graph)
    current = kinetic_temperature(vel, m, graph)
    scale = torch.where(current > 0, torch.sqrt(target / current.clamp_min(1e-300)), 0.0)
    return vel * scale[graph].unsqueeze(-1)


# --------------------------------------------------------------------------------- thermostats
def csvr(
    vel: torch.Tensor,
    masses: torch.Tensor,
    batch: torch.Tensor | None,
    target_K,
    dt_fs: float,
    tau_fs: float | None = None,
    generator: GeneratorLike = None,
) -> torch.Tensor:
    """Canonical sampling through velocity rescaling (Bussi, Donadio & Parrinello 2007).

    Exact stochastic update of each system's internal kinetic energy K (relative to its centre
    of mass, N_f = 3N − 3, as :mod:`equignnmd.physics` defines the temperature) over one
    interval ``dt_fs`` (their Eq. A7): with c = exp(−Δt/τ), K̄ = N_f k_B T/2, R a standard
    normal and S a χ² variable with N_f − 1 degrees of freedom,

        K' = K + (1 − c)(K̄ (S + R²)/N_f − K) + 2 R √(c (1 − c) K K̄ / N_f),

    and the velocities relative to the centre of mass are scaled by √(K'/K) (net momentum is
    untouched). ``tau_fs`` defaults to 100 × ``dt_fs``; τ = 0 resamples K from the canonical
    distribution at once.
    """
    graph = system_index(batch, vel.shape[0], vel.device)
    num = num_systems(graph)
    if tau_fs is None:
        tau_fs = 100.0 * dt_fs
    if tau_fs < 0 or dt_fs <= 0:
        raise ValueError(f"csvr: need dt_fs > 0 and tau_fs ≥ 0, got {dt_fs}, {tau_fs}")
    c = math.exp(-dt_fs / tau_fs) if tau_fs > 0 else 0.0
    work = vel.to(torch.float64) if vel.dtype != torch.float64 else vel
    internal = remove_net_momentum(work, masses, graph)
    ke = internal_kinetic_energy(work, masses, graph)
    nf = degrees_of_freedom(graph, num=num).to(work.device)
    kbar = 0.5 * nf * KB_EV_PER_K * per_system(target_K, num, ke)
    r1, chi2 = _randn_systems((nf.round() - 1).clamp_min(0).long(), num, generator, ke)
    new = (
        ke
        + (1.0 - c) * (kbar * (chi2 + r1 * r1) / nf - ke)
        + 2.0 * r1 * torch.sqrt((c * (1.0 - c)) * ke * kbar / nf)
    )
    alpha = torch.where(ke > 0, torch.sqrt(new.clamp_min(0) / ke.clamp_min(1e-300)), 1.0)
    scaled = work + (alpha[graph].unsqueeze(-1) - 1.0) * internal
    return scaled.to(vel.dtype)


def langevin(
    vel: torch.Tensor,
    masses: torch.Tensor,
    batch: torch.Tensor | None,
    target_K,
    dt_fs: float,
    friction_per_ps: float,
    generator: GeneratorLike = None,
) -> torch.Tensor:
    """Exact Ornstein–Uhlenbeck update over ``dt_fs`` (BAOAB's O step), once per stride.

    v' = c v + √((1 − c²) k_B T / m) ξ with c = exp(−γ Δt), γ = ``friction_per_ps`` (1/ps).
    The noise carries net momentum; remove it afterwards when momentum should stay zero.
    """
    graph = system_index(batch, vel.shape[0], vel.device)
    num = num_systems(graph)
    if friction_per_ps < 0:
        raise ValueError(f"langevin: friction_per_ps must be ≥ 0, got {friction_per_ps}")
    c = math.exp(-friction_per_ps * fs_to_ps(dt_fs))
    m = masses.to(vel.dtype)
    target = per_system(target_K, num, m)
    sigma = torch.sqrt((1.0 - c * c) * KB_EV_PER_K * target[graph] / (m * MVV2E))
    noise = _randn_atoms((3,), graph, num, generator, vel)
    return c * vel + sigma.unsqueeze(-1) * noise


def make_thermostat(
    kind: str | None,
    target_K=None,
    dt_fs: float | None = None,
    tau_fs: float | None = None,
    friction_per_ps: float | None = None,
):
    """A callable ``(vel, masses, batch, generator) -> vel`` for ``kind`` none | csvr | langevin.

    csvr: ``tau_fs`` defaults to 100 × ``dt_fs``; langevin: ``friction_per_ps`` defaults to
    1 / (100 × ``dt_fs``) (a damping time of 100 strides). Returns ``None`` for "none".
    """
    name = (kind or "none").lower()
    if name in ("none", "nve"):
        return None
    if target_K is None or dt_fs is None:
        raise ValueError(f"thermostat {name!r} needs target_K and dt_fs")
    temps = sorted(set(torch.as_tensor(target_K, dtype=torch.float64).reshape(-1).tolist()))
    t_text = f"{temps[0]:g}" if len(temps) == 1 else "/".join(f"{t:g}" for t in temps)
    if name in ("csvr", "bussi"):
        tau = 100.0 * dt_fs if tau_fs is None else float(tau_fs)

        def step(vel, masses, batch, generator):
            return csvr(vel, masses, batch, target_K, dt_fs, tau, generator)

        step.description = f"csvr(T={t_text} K, tau={tau:g} fs)"
        return step
    if name == "langevin":
        gamma = 1.0 / fs_to_ps(100.0 * dt_fs) if friction_per_ps is None else float(friction_per_ps)

        def step(vel, masses, batch, generator):
            return langevin(vel, masses, batch, target_K, dt_fs, gamma, generator)

        step.description = f"langevin(T={t_text} K, friction={gamma:g} /ps)"
        return step
    raise ValueError(f"unknown thermostat {kind!r}; expected one of none, csvr, langevin")
