"""Figures for trajectory analysis (PNG files). Units: Å, ps, fs, K, THz.

Every function draws one figure, writes it to ``path`` (creating parent folders), closes it and
returns the path. The non-interactive Agg backend is selected inside the functions; importing
this module has no side effects (matplotlib is imported lazily).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def _figure(figsize=(6.0, 4.0)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return plt, fig, ax


def _save(plt, fig, ax, path, title: str | None, legend: bool = True) -> Path:
    if title:
        ax.set_title(title)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _lines(ax, curves: Mapping, **kwargs) -> None:
    for label, (x, y) in curves.items():
        ax.plot(x, y, label=str(label), lw=1.4, **kwargs)


def plot_rdf(path, curves: Mapping[str, tuple], title: str | None = None) -> Path:
    """g(r) curves, ``curves = {label: (r_A, g)}``."""
    plt, fig, ax = _figure()
    _lines(ax, curves)
    ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)")
    return _save(plt, fig, ax, path, title)


def plot_msd(path, curves: Mapping[str, tuple], title: str | None = None) -> Path:
    """Mean squared displacement curves, ``curves = {label: (t_ps, msd_A2)}``."""
    plt, fig, ax = _figure()
    _lines(ax, curves)
    ax.set_xlabel("Time lag (ps)")
    ax.set_ylabel("MSD (Å²)")
    return _save(plt, fig, ax, path, title)


def plot_temperature(
    path,
    curves: Mapping[str, tuple],
    target: float | None = None,
    title: str | None = None,
) -> Path:
    """Kinetic temperature traces, ``curves = {label: (t_ps, T_K)}``; ``target`` K as a line."""
    plt, fig, ax = _figure()
    _lines(ax, curves)
    if target is not None:
        ax.axhline(float(target), color="k", lw=1.0, ls="--", label=f"target {target:g} K")
    ax.set_xlabel("Time (ps)")
    ax.set_ylabel("Temperature (K)")
    return _save(plt, fig, ax, path, title)


def plot_energy(
    path, curves: Mapping[str, tuple], ylabel: str = "Energy (eV)", title: str | None = None
) -> Path:
    """Energy traces, ``curves = {label: (t_ps, energy)}`` (units in ``ylabel``)."""
    plt, fig, ax = _figure()
    _lines(ax, curves)
    ax.set_xlabel("Time (ps)")
    ax.set_ylabel(ylabel)
    return _save(plt, fig, ax, path, title)


def plot_vdos(path, curves: Mapping[str, tuple], title: str | None = None) -> Path:
    """Vibrational densities of states, ``curves = {label: (frequency_THz, dos)}``."""
    plt, fig, ax = _figure()
    _lines(ax, curves)
    ax.set_xlabel("Frequency (THz)")
    ax.set_ylabel("VDOS (1/THz)")
    ax.set_xlim(left=0.0)
    return _save(plt, fig, ax, path, title)


def plot_error_vs_dt(
    path,
    table: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    ylabel: str = "Position error (Å)",
    title: str | None = None,
) -> Path:
    """Error against time step on a log y axis, ``table = {label: (dt_fs list, err list)}``."""
    plt, fig, ax = _figure()
    _lines(ax, table, marker="o", ms=4)
    ax.set_yscale("log")
    ax.set_xlabel("Time step Δt (fs)")
    ax.set_ylabel(ylabel)
    return _save(plt, fig, ax, path, title)


__all__ = ["plot_error_vs_dt", "plot_msd", "plot_rdf", "plot_temperature", "plot_vdos"]
