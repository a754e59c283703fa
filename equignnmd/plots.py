"""Figures for trajectory analysis (PNG files). Units: Å, ps, fs, K, THz.

Every function draws one figure, writes it to ``path`` (creating parent folders), closes it and
returns the path. The non-interactive Agg backend is selected inside the functions; importing
this module has no side effects (matplotlib is imported lazily).

Trajectory plots (RDF, MSD, temperature, energy, VDOS) take ``frames`` (how many trajectory
frames the curves come from; default: the length of the shortest curve, right for time
series) and ``min_frames``: a series from fewer frames means nothing drawn as a line (a 3-point
"VDOS"), so the figure shows the text "too short to plot (n frames)" instead of curves. The
evaluation report passes its scoring minimum (:data:`equignnmd.analysis.MIN_SCORE_FRAMES`).
``return_figure=True`` returns ``(path, figure)`` (closed, still inspectable or re-savable).
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


def _save(plt, fig, ax, path, title: str | None, legend: bool = True, figure: bool = False):
    if title:
        ax.set_title(title)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return (path, fig) if figure else path


MIN_PLOT_FRAMES = 2
"""A line needs two points: the default ``min_frames`` of the trajectory plots."""


def too_short_text(frames: int) -> str:
    """What a trajectory plot says in place of curves from ``frames`` frames."""
    return f"too short to plot ({frames} frames)"


def _lines(ax, curves: Mapping, **kwargs) -> None:
    for label, (x, y) in curves.items():
        ax.plot(x, y, label=str(label), lw=1.4, **kwargs)


def _series(ax, curves: Mapping, frames: int | None, min_frames: int) -> bool:
    """Draw ``curves``, or, when they come from fewer than ``min_frames`` frames, the "too
    short to plot" text; returns whether curves were drawn."""
    n = frames if frames is not None else min((len(x) for x, _ in curves.values()), default=0)
    if n >= max(int(min_frames), 1) and curves:
        _lines(ax, curves)
        return True
    text = f"{too_short_text(int(n))}\n(a plot needs at least {min_frames})"
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.3")
    return False


def plot_rdf(
    path,
    curves: Mapping[str, tuple],
    title: str | None = None,
    frames: int | None = None,
    min_frames: int = MIN_PLOT_FRAMES,
    return_figure: bool = False,
) -> Path:
    """g(r) curves, ``curves = {label: (r_A, g)}``, averaged over ``frames`` frames."""
    plt, fig, ax = _figure()
    if _series(ax, curves, frames if frames is not None else min_frames, min_frames):
        ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)")
    return _save(plt, fig, ax, path, title, figure=return_figure)


def plot_msd(
    path,
    curves: Mapping[str, tuple],
    title: str | None = None,
    frames: int | None = None,
    min_frames: int = MIN_PLOT_FRAMES,
    return_figure: bool = False,
) -> Path:
    """Mean squared displacement curves, ``curves = {label: (t_ps, msd_A2)}``."""
    plt, fig, ax = _figure()
    _series(ax, curves, frames, min_frames)
    ax.set_xlabel("Time lag (ps)")
    ax.set_ylabel("MSD (Å²)")
    return _save(plt, fig, ax, path, title, figure=return_figure)


def plot_temperature(
    path,
    curves: Mapping[str, tuple],
    target: float | None = None,
    title: str | None = None,
    frames: int | None = None,
    min_frames: int = MIN_PLOT_FRAMES,
    return_figure: bool = False,
) -> Path:
    """Kinetic temperature traces, ``curves = {label: (t_ps, T_K)}``; ``target`` K as a line."""
    plt, fig, ax = _figure()
    if _series(ax, curves, frames, min_frames) and target is not None:
        ax.axhline(float(target), color="k", lw=1.0, ls="--", label=f"target {target:g} K")
    ax.set_xlabel("Time (ps)")
    ax.set_ylabel("Temperature (K)")
    return _save(plt, fig, ax, path, title, figure=return_figure)


def plot_energy(
    path,
    curves: Mapping[str, tuple],
    ylabel: str = "Energy (eV)",
    title: str | None = None,
    frames: int | None = None,
    min_frames: int = MIN_PLOT_FRAMES,
    return_figure: bool = False,
) -> Path:
    """Energy traces, ``curves = {label: (t_ps, energy)}`` (units in ``ylabel``)."""
    plt, fig, ax = _figure()
    _series(ax, curves, frames, min_frames)
    ax.set_xlabel("Time (ps)")
    ax.set_ylabel(ylabel)
    return _save(plt, fig, ax, path, title, figure=return_figure)


def plot_vdos(
    path,
    curves: Mapping[str, tuple],
    title: str | None = None,
    frames: int | None = None,
    min_frames: int = MIN_PLOT_FRAMES,
    return_figure: bool = False,
) -> Path:
    """Vibrational densities of states, ``curves = {label: (frequency_THz, dos)}``, from the
    velocities of ``frames`` frames."""
    plt, fig, ax = _figure()
    _series(ax, curves, frames if frames is not None else min_frames, min_frames)
    ax.set_xlabel("Frequency (THz)")
    ax.set_ylabel("VDOS (1/THz)")
    ax.set_xlim(left=0.0)
    return _save(plt, fig, ax, path, title, figure=return_figure)


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


__all__ = [
    "MIN_PLOT_FRAMES",
    "plot_energy",
    "plot_error_vs_dt",
    "plot_msd",
    "plot_rdf",
    "plot_temperature",
    "plot_vdos",
    "too_short_text",
]
