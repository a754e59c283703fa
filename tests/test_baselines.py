"""Baselines on real LAMMPS data: same interface as a model, numbers of the right size."""

import numpy as np
import torch
from torch_geometric.data import Batch

from baselines import BASELINES, position_errors
from baselines.table import baseline_table, format_table
from equignnmd.cli import main
from equignnmd.data.dataset import PairDataset


def test_batch_predictors_agree_with_table(tiny_dataset):
    ds = PairDataset(tiny_dataset, [10], "test", dtype=torch.float64)
    batch = Batch.from_data_list([ds[i] for i in range(0, len(ds), 40)])
    errs = {
        n: position_errors(f(batch).displacement, batch.disp)["mean"] for n, f in BASELINES.items()
    }
    # at 10 fs, Taylor (one force call) beats ballistic beats standing still, by a lot
    assert errs["taylor"] < 0.5 * errs["ballistic"] < 0.5 * errs["zero"]
    # ballistic velocity = input velocity; Taylor velocity is better
    v_true = batch.vel_next
    assert (BASELINES["taylor"](batch).velocity - v_true).norm(dim=1).mean() < (
        batch.vel - v_true
    ).norm(dim=1).mean()


def test_table_matches_developers_figures_at_350K(tiny_dataset):
    rows = {r["dt_fs"]: r for r in baseline_table(tiny_dataset, [1, 10, 20], 100, [350])}
    # DEVELOPERS.md (350 K, NPT): zero 0.0053/0.052/0.103, ballistic 0.00019/0.0102/0.040.
    # The tiny set is equilibrated only 0.5 ps, so allow 30 %; at 1 fs the still-settling
    # barostat's rescaling of positions dominates the ballistic error, so skip that one.
    for dt, zero, ballistic in [(1, 0.0053, None), (10, 0.052, 0.0102), (20, 0.103, 0.040)]:
        assert abs(rows[dt]["zero_mean_A"] / zero - 1) < 0.3
        if ballistic is not None:
            assert abs(rows[dt]["ballistic_mean_A"] / ballistic - 1) < 0.3
    assert rows[10]["taylor_mean_A"] < 0.5 * rows[10]["ballistic_mean_A"]
    text = format_table(list(rows.values()))
    assert "350 K" in text and "| 10 |" in text


def test_cli_prints_table(tiny_dataset, capsys, tmp_path):
    out = tmp_path / "rows.json"
    assert main(["baselines", "--data", str(tiny_dataset), "--dt", "1,5", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "300 K" in text and "350 K" in text and "Taylor" in text
    assert out.exists()
    assert main(["baselines", "--data", str(tiny_dataset), "--dt", "5000"]) == 2
    err = capsys.readouterr().err
    assert "T0300K.h5" in err and "frame_interval_fs" in err


def test_zero_error_for_exact_prediction():
    d = np.random.default_rng(0).normal(size=(10, 3))
    assert position_errors(d, d)["mean"] == 0.0
