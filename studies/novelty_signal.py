"""Does a cheap per-atom novelty signal tell a model's training states from the ones it never saw?

Issue 34 part 3 asks for an out-of-distribution signal, computed every stride at small cost,
that fires within the first strides for the bulk-only ``equivariant-al`` v2 on a slab and a
liquid and stays silent inside its range. This measures one candidate before it is built:
per-atom smooth densities at the model's cutoff,

    ρ_{i,β} = Σ_j exp(−β r_ij / r_c) c(r_ij),   β = 1, 3, 6,

(c the polynomial envelope of :mod:`equignnmd.radial`; the energy head's density form), and
the box [min, max] of each over the model's training states (LAMMPS, Mendelev EAM, 500-atom FCC
Al under NPT at v2's training temperatures 5, 100, 300, 500 and 800 K). A state's score is the
fraction of atoms with any feature outside that box, per frame. Then the same score every
stride of a v2 rollout (20 fs, CSVR) from LAMMPS states in and out of its range::

    python studies/novelty_signal.py --out runs/novelty.json

(66 s on 2 cores: 15 LAMMPS runs of ~4 ps and 10-stride v2 rollouts; results and the
table in docs/studies/2026-12-07-issue-34-novelty-signal.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import equignnmd
from equignnmd._lammps import resolve_potential
from equignnmd.data.lammps_md import LammpsMD, MDSettings
from equignnmd.graph import edge_vectors, neighbour_list
from equignnmd.outputs import claim_output
from equignnmd.radial import PolynomialCutoff
from equignnmd.rollout import Rollout, RolloutConfig, RolloutState

DECAYS = (1.0, 3.0, 6.0)
TRAINING_K = (5.0, 100.0, 300.0, 500.0, 800.0)
STATES = {  # name: MDSettings fields (500-atom class, Mendelev Al)
    "bulk 350 K (held out)": dict(structure="bulk", temperature_K=350.0),
    "bulk 650 K (held out)": dict(structure="bulk", temperature_K=650.0),
    "vacancy 450 K": dict(structure="vacancy", temperature_K=450.0),
    "divacancy 450 K": dict(structure="divacancy", temperature_K=450.0),
    "interstitial 300 K": dict(structure="interstitial", temperature_K=300.0),
    "bulk 300 K, +3 % strain": dict(structure="bulk", temperature_K=300.0, strain=(0.03,) * 3),
    "slab (100) 300 K": dict(structure="slab", temperature_K=300.0, miller=(1, 0, 0)),
    "slab (111) 600 K": dict(structure="slab", temperature_K=600.0, miller=(1, 1, 1)),
    "liquid 1100 K": dict(structure="liquid", temperature_K=1100.0, melt_ps=5.0),
    "bulk 1000 K (above range)": dict(structure="bulk", temperature_K=1000.0),
}


def features(pos, cell, cutoff: float, batch=None) -> torch.Tensor:
    """(N, len(DECAYS)) per-atom smooth densities at ``cutoff`` (module doc), float64."""
    pos = torch.as_tensor(pos, dtype=torch.float64)
    cells = torch.as_tensor(cell, dtype=torch.float64).reshape(-1, 3, 3)
    batch = torch.zeros(len(pos), dtype=torch.long) if batch is None else batch
    ei, sh = neighbour_list(pos, cells, cutoff, batch)
    r = edge_vectors(pos, cells, ei, sh, batch).norm(dim=-1)
    env = PolynomialCutoff(cutoff)(r)
    beta = torch.as_tensor(DECAYS, dtype=torch.float64)
    per_edge = torch.exp(-beta * (r / cutoff).unsqueeze(-1)) * env.unsqueeze(-1)
    return torch.zeros(len(pos), len(DECAYS), dtype=torch.float64).index_add_(0, ei[1], per_edge)


def outside(f: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """(N,) bool: any feature outside [lo, hi]."""
    return ((f < lo) | (f > hi)).any(dim=-1)


def lammps_frames(settings: dict, eq_ps: float, rec_ps: float, every_fs: float, seed: int):
    """Frames of a LAMMPS run of ``settings`` (MDSettings fields): eq, then a frame every
    ``every_fs`` over ``rec_ps``."""
    s = MDSettings(
        potential=resolve_potential(None), cells=5, seed=seed, descriptors=False, **settings
    )
    md = LammpsMD(s)
    for commands, n in md.stages(int(eq_ps * 1000)):
        md.command_stage(commands)
        md.run(n)
    frames = []
    for _ in range(int(rec_ps * 1000 / every_fs)):
        md.run(int(every_fs))
        frames.append(md.frame())
    md.close()
    return frames


def rollout_scores(model, frame, lo, hi, temperature_K: float, strides: int = 10) -> list:
    """Fraction of atoms outside the box at every stride of a v2 rollout from ``frame``."""
    n = len(frame["positions"])
    start = RolloutState.from_arrays(
        [frame["positions"]], [frame["velocities"]], [frame["cell"]], [np.full(n, 13)],
        [np.full(n, 26.9815)],
    )  # fmt: skip
    scores = []

    def score(state, thermo):
        f = features(state.positions, state.cell, model.cutoff)
        scores.append(float(outside(f, lo, hi).double().mean()))

    cfg = RolloutConfig.of(
        dt_fs=20.0, steps=strides, temperature_K=temperature_K, thermostat="csvr",
        progress=False, write_every=0, max_temperature_factor=None, min_distance_A=0.5,
    )  # fmt: skip
    with Rollout(model, start, cfg, observers=[score]) as ro:
        result = ro.run()
    return scores, result.stopped_reason


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/novelty.json", help="JSON of the measurements")
    p.add_argument("--eq-ps", type=float, default=2.0, help="equilibration per state, ps")
    p.add_argument("--rec-ps", type=float, default=2.0, help="recorded time per state, ps")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = p.parse_args(argv)
    claim_output(args.out, overwrite=args.overwrite, what="JSON file")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model = equignnmd.load_checkpoint("pretrained:equivariant-al")
    cutoff = float(model.cutoff)
    train = [
        features(f["positions"], f["cell"], cutoff)
        for k, T in enumerate(TRAINING_K)
        for f in lammps_frames(dict(temperature_K=T), args.eq_ps, args.rec_ps, 100.0, 10 + k)
    ]
    allf = torch.cat(train)
    lo, hi = allf.min(0).values, allf.max(0).values
    rows = {}
    for k, (name, settings) in enumerate(STATES.items()):
        frames = lammps_frames(settings, args.eq_ps, args.rec_ps, 100.0, 100 + k)
        fr = [
            float(outside(features(f["positions"], f["cell"], cutoff), lo, hi).double().mean())
            for f in frames
        ]
        roll, stopped = rollout_scores(model, frames[-1], lo, hi, settings["temperature_K"])
        rows[name] = {
            "lammps_fraction_mean": float(np.mean(fr)),
            "lammps_fraction_max": float(np.max(fr)),
            "rollout_fraction_by_stride": roll,
            "rollout_stopped": stopped,
        }
        first = next((i for i, v in enumerate(roll) if v > 0), None)
        print(
            f"{name:28s} LAMMPS: mean {np.mean(fr):.4f} max {np.max(fr):.4f} | v2 rollout: "
            f"stride 0 {roll[0]:.4f}, first > 0 at stride {first}, max {max(roll):.4f}"
            + (f" (stopped: {stopped})" if stopped else ""),
            flush=True,
        )
    out = {
        "decays": DECAYS,
        "cutoff_A": cutoff,
        "training_K": TRAINING_K,
        "box_low": lo.tolist(),
        "box_high": hi.tolist(),
        "states": rows,
        "wall_s": time.perf_counter() - t0,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"box low {lo.numpy().round(3)} high {hi.numpy().round(3)}; {out['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
