"""Can the faithful ``paper`` model represent the ballistic step v·Δt? (issue 15)

    python studies/paper_ballistic.py --checkpoint runs/paper-ablation/faithful/best.pt \\
        --data data/paper256 [--minutes 10] [--out runs/paper-ballistic.json]

The faithful model must rebuild ``v Δt`` from three velocity components among 198 node inputs,
through LayerNorm'd hidden states, before it can add the force-driven correction. This probe
trains the checkpoint's architecture from fresh weights (same widths, same normalisation
statistics) on the *synthetic* target d = v Δt, v(t + Δt) = v (free flight) on the training
frames, with the trainer's loss (:func:`equignnmd.train.loss_terms`), Adam and a cosine
schedule over the budget, one thread. It reports the mean per-atom error |d − v Δt| on the
held-out 350 K frames per stride, beside r + vΔt's and the real-target model's error: an error
on the synthetic target the size of the real model's excess over r + vΔt at 1 fs means the
ballistic reconstruction, not the physics, is the remaining gap.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch


def probe(checkpoint: str, data: str, minutes: float, strides=(1.0, 2.0, 5.0, 10.0), seed=0):
    from torch_geometric.loader import DataLoader

    from equignnmd.checkpoint import load_checkpoint
    from equignnmd.data.dataset import PairDataset
    from equignnmd.train import loss_terms
    from equignnmd.units import fs_to_ps

    torch.manual_seed(seed)
    model = load_checkpoint(checkpoint, device="cpu")
    for m in model.modules():  # fresh weights, the same architecture and statistics
        if m is not model and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    stats = model.stats
    train = PairDataset(data, list(strides), "train", test_temperatures_K=[350.0])
    test = PairDataset(data, [1.0, 5.0, 10.0], "test", test_temperatures_K=[350.0], max_samples=48)

    def free_flight(batch):
        dt = fs_to_ps(batch.dt_fs)[batch.batch].unsqueeze(-1)
        batch.disp = batch.vel * dt
        batch.vel_next = batch.vel.clone()
        return batch

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    budget = 60.0 * minutes
    t0, steps, samples = time.perf_counter(), 0, 0
    model.train()
    gen = torch.Generator().manual_seed(seed)
    while time.perf_counter() - t0 < budget:
        for batch in DataLoader(train, batch_size=2, shuffle=True, generator=gen):
            elapsed = time.perf_counter() - t0
            if elapsed >= budget:
                break
            for group in opt.param_groups:  # cosine over the wall budget
                group["lr"] = 1e-3 * 0.5 * (1.0 + math.cos(math.pi * elapsed / budget))
            batch = model.prepare(free_flight(batch))
            loss, _ = loss_terms(model(batch), batch, stats, velocity_weight=1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            steps += 1
            samples += batch.num_graphs
    model.eval()
    errs: dict[float, list[float]] = {}
    with torch.no_grad():
        for batch in DataLoader(test, batch_size=4):
            batch = model.prepare(free_flight(batch))
            pred = model(batch)
            per_atom = (pred.displacement - batch.disp).norm(dim=-1)
            ballistic = batch.disp.norm(dim=-1)
            for s in batch.dt_fs.unique().tolist():
                mask = batch.dt_fs[batch.batch] == s
                acc = errs.setdefault(s, [0.0, 0.0, 0])
                acc[0] += float(per_atom[mask].sum())
                acc[1] += float(ballistic[mask].sum())
                acc[2] += int(mask.sum())
    return {
        "minutes": minutes,
        "optimiser_steps": steps,
        "samples": samples,
        "per_stride": {
            f"{s:g}": {"err_A": e / n, "vdt_A": b / n, "relative": e / b}
            for s, (e, b, n) in sorted(errs.items())
        },
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--out", default="runs/paper-ballistic.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    res = probe(args.checkpoint, args.data, args.minutes)
    res["checkpoint"] = args.checkpoint
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
