"""The model-agnostic trainer: metrics, checkpoints, exact resume, DDP with gloo."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from equignnmd import load_checkpoint
from equignnmd.checkpoint import read_checkpoint
from equignnmd.cli import main
from equignnmd.data.dataset import PairDataset
from equignnmd.data.format import read_index
from equignnmd.data.reference_md import dataset_reference, dataset_reference_material
from equignnmd.graph import collate
from equignnmd.models import build_model
from equignnmd.models.base import Prediction, TrainingStats
from equignnmd.train import load_run_spec, loss_terms, perturb_inputs, stride_scale

SMALL = [
    "--config",
    "paper-small",
    "--strides",
    "1,10",
    "--batch-size",
    "2",
    "--set",
    "max_train_samples=6",
    "--set",
    "max_val_samples=4",
    "--no-progress",
]


def run(tmp_path, name, *extra):
    return main(
        ["train", "--data", str(pytest.tiny), "--out", str(tmp_path / name), *SMALL, *extra]
    )


@pytest.fixture(autouse=True)
def _data(tiny_dataset):
    pytest.tiny = tiny_dataset


def test_files_metrics_and_best(tmp_path, capsys):
    assert run(tmp_path, "a", "--epochs", "2") == 0
    out = tmp_path / "a"
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for key in ("train_loss", "val_loss", "lr", "epoch_time_s", "samples_per_s", "atoms_per_s"):
        assert float(rows[0][key]) > 0
    ckpt = read_checkpoint(out / "best.pt")
    assert ckpt["arch"] == "paper" and ckpt["trainer"] is None
    assert ckpt["data_summary"]["train"]["temperatures_K"] == [300.0]
    # the checkpoint alone gives its data's reference and crystal
    reference, material = dataset_reference_material(ckpt["data_summary"]["dataset_meta"])
    assert reference == dataset_reference(read_index(pytest.tiny)) and material.element == "Al"
    model = load_checkpoint(out / "best.pt", device="cpu")
    assert model.stats.strides_fs == [1.0, 10.0]
    # the trainer attaches the box of its training split's local densities (equignnmd.novelty)
    box = model.novelty_box
    assert box is not None and box.cutoff_A == model.cutoff and str(pytest.tiny) in box.source
    assert all(lo < hi for lo, hi in zip(box.low, box.high))
    table = (out / "validation.md").read_text()
    assert "ballistic" in table and "| 10 |" in table
    assert "2nd-order Taylor" in capsys.readouterr().out


def test_resume_equals_uninterrupted(tmp_path):
    assert run(tmp_path, "straight", "--epochs", "3") == 0
    assert run(tmp_path, "split", "--epochs", "1") == 0
    # as if killed after epoch 2's metrics row was written but before its checkpoint
    with open(tmp_path / "split" / "metrics.csv", "a") as f:
        f.write("2,9.9,9.9,9.9,0.001,1.0,1.0,1.0\n")
    with pytest.warns(UserWarning, match="model settings"):
        assert run(tmp_path, "split", "--epochs", "3", "--resume", "--set", "model.hidden=16") == 0
    a = read_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = read_checkpoint(tmp_path / "split" / "last.pt")["model"]
    # Float reductions on 2 CPU threads may change order between runs (seen: ≤ 3e-7 after 3
    # epochs); a resume that lost optimizer, scheduler or RNG state moves weights by ~lr = 1e-3.
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=k)
    rows = list(csv.DictReader(open(tmp_path / "split" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[1]["train_loss"]) != 9.9


def test_time_budget_stops_and_holds_over_resume(tmp_path, capsys):
    # a budget of 0.6 ms ends the run after its first epoch, however fast the machine
    assert run(tmp_path, "t", "--epochs", "5", "--set", "max_minutes=0.00001") == 0
    rows = list(csv.DictReader(open(tmp_path / "t" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1]
    assert float(rows[0]["elapsed_min"]) > 0
    assert "time budget of 1e-05 min reached after 1 epochs" in capsys.readouterr().out
    assert read_checkpoint(tmp_path / "t" / "last.pt")["trainer"]["elapsed_s"] > 0
    # resuming keeps the time already spent: nothing is left of the budget
    assert run(tmp_path, "t", "--epochs", "5", "--resume", "--set", "max_minutes=0.00001") == 0
    assert len(list(csv.DictReader(open(tmp_path / "t" / "metrics.csv")))) == 1


def _refused(argv_run, capsys) -> str:
    """The message of a refused ``equignnmd train`` run, raised or printed by main()."""
    from equignnmd.outputs import OutputExistsError

    try:
        code = argv_run()
    except OutputExistsError as err:
        return str(err)
    assert code == 2
    return capsys.readouterr().err


def test_a_run_folder_is_not_overwritten_by_surprise(tmp_path, capsys):
    from equignnmd.outputs import OutputExistsError
    from equignnmd.train import train

    assert run(tmp_path, "o", "--epochs", "1") == 0
    out = tmp_path / "o"
    best = (out / "best.pt").read_bytes()
    capsys.readouterr()
    # refused before the data are read: a missing dataset is not what it complains about
    err = _refused(
        lambda: main(["train", "--data", str(tmp_path / "nope"), "--out", str(out), *SMALL]),
        capsys,
    )
    assert f"run folder {out} (--out) already holds" in err and "best.pt" in err
    assert "--resume" in err and "--overwrite" in err and "nope" not in err
    assert (out / "best.pt").read_bytes() == best
    # ... and by the library
    spec = load_run_spec(
        "configs/paper-small.yaml", train_overrides={"data": str(pytest.tiny), "out": str(out)}
    )
    with pytest.raises(OutputExistsError, match="already holds"):
        train(spec, progress=False)
    assert run(tmp_path, "o", "--epochs", "1", "--resume", "--overwrite") == 2
    assert "give one" in capsys.readouterr().err
    # --overwrite starts afresh: the run's own files replaced, a stale replay set gone, a
    # file of the user's kept
    (out / "replay").mkdir()
    (out / "replay" / "dataset.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    assert run(tmp_path, "o", "--epochs", "1", "--overwrite", "--seed", "1") == 0
    assert not (out / "replay").exists() and (out / "notes.txt").read_text() == "mine"
    assert [r["epoch"] for r in csv.DictReader(open(out / "metrics.csv"))] == ["1"]
    assert read_checkpoint(out / "last.pt")["trainer"]["spec"]["train"]["seed"] == 1
    # an empty folder is no run to protect
    (tmp_path / "empty").mkdir()
    assert run(tmp_path, "empty", "--epochs", "1") == 0


def test_time_budget_cuts_the_epoch_and_resume_continues(tmp_path, capsys):
    """The budget is checked after every batch: 0.6 ms is spent by the first batch, so the
    first epoch ends there (of 6), validated and checkpointed as a short epoch; a resume with
    more time goes on with epoch 2 from that state."""
    more = ["--set", "max_train_samples=12"]  # 12 pairs, batches of 2: 6 batches an epoch
    assert run(tmp_path, "cut", "--epochs", "3", *more, "--set", "max_minutes=0.00001") == 0
    out = tmp_path / "cut"
    (row,) = csv.DictReader(open(out / "metrics.csv"))
    assert (row["epoch"], row["batches"], row["epoch_batches"]) == ("1", "1", "6")
    assert "reached after 1 epochs" in capsys.readouterr().out
    last = read_checkpoint(out / "last.pt")
    assert last["trainer"]["epoch"] == 0
    assert all(s["step"] == 1 for s in last["trainer"]["optimizer"]["state"].values())
    best = read_checkpoint(out / "best.pt")["model"]
    assert all(torch.equal(best[k], last["model"][k]) for k in best)  # validated, the best
    assert run(tmp_path, "cut", "--epochs", "2", *more, "--resume", "--set", "max_minutes=0") == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [(r["epoch"], r["batches"]) for r in rows] == [("1", "1"), ("2", "6")]
    last = read_checkpoint(out / "last.pt")["trainer"]
    assert last["epoch"] == 1  # one step from the cut epoch, six from the whole one
    assert all(s["step"] == 7 for s in last["optimizer"]["state"].values())


def test_no_progress_prints_a_line_per_epoch_and_per_interval(tmp_path, capsys, monkeypatch):
    import equignnmd.train

    monkeypatch.setattr(equignnmd.train, "PROGRESS_EVERY_S", 0.0)  # a line after every batch
    assert run(tmp_path, "lines", "--epochs", "2") == 0
    lines = capsys.readouterr().out.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and epochs[0].startswith("epoch 1/2: train ")
    for text in (", val ", " Å), lr 0.001, ", " min elapsed, ~", " min left"):
        assert text in epochs[0], epochs[0]
    assert epochs[1].endswith("~0.0 min left")
    # 3 batches an epoch: lines after the first two (the epoch line follows the third)
    assert [line.split(",")[0] for line in lines if line.startswith("  epoch")] == [
        "  epoch 1/2: batch 1/3",
        "  epoch 1/2: batch 2/3",
        "  epoch 2/2: batch 1/3",
        "  epoch 2/2: batch 2/3",
    ]


def test_train_help_shows_the_builtin_configs_values():
    import argparse

    from equignnmd.cli import build_parser
    from equignnmd.config import CONFIG_DIR
    from equignnmd.models import REGISTRY

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train_parser = sub.choices["train"]
    train_parser.format_help()
    helps = {a.dest: a.help for a in train_parser._actions}
    for arch in REGISTRY:
        cfg = load_run_spec(CONFIG_DIR / f"{arch}.yaml").train
        assert arch in helps["epochs"] and f": {cfg.epochs}" in helps["epochs"]
        assert f": {cfg.lr:g}" in helps["lr"] and f": {cfg.dtype}" in helps["dtype"]
    assert helps["epochs"].startswith("training epochs (default: the config's value; ")
    assert "5,10,20,50" in helps["strides"]


def test_cosine_schedule_follows_the_epochs_and_is_checked(tmp_path, capsys):
    from equignnmd.train import cosine_lr

    assert run(tmp_path, "c", "--epochs", "3", "--set", "lr_schedule=cosine") == 0
    rows = list(csv.DictReader(open(tmp_path / "c" / "metrics.csv")))
    lrs = [float(r["lr"]) for r in rows]
    assert lrs == pytest.approx([cosine_lr(1e-3, k / 3) for k in range(3)])
    assert lrs[0] == pytest.approx(1e-3) and lrs[2] < 0.3e-3
    assert cosine_lr(1e-3, 1.0) == pytest.approx(1e-5)
    assert run(tmp_path, "bad", "--epochs", "1", "--set", "lr_schedule=linear") == 2
    assert "field 'lr_schedule' = 'linear'; expected plateau or cosine" in capsys.readouterr().err


def test_resume_without_checkpoint_is_clear(tmp_path, capsys):
    assert run(tmp_path, "none", "--epochs", "1", "--resume") == 2
    assert "last.pt" in capsys.readouterr().err


def test_zero_epochs_needs_a_model_that_fits_itself(tmp_path, capsys):
    """``epochs: 0`` writes a data-initialised model (symplectic; tests/test_symplectic.py);
    a network with random weights is refused before anything is written."""
    assert run(tmp_path, "zero", "--epochs", "0") == 2
    assert "initialises itself from the data" in capsys.readouterr().err
    assert not (tmp_path / "zero").exists()


def test_unknown_arch_and_bad_config(tmp_path, capsys):
    with pytest.raises(ValueError, match="known: equivariant, paper"):
        build_model("transformer")
    assert load_run_spec(None, "paper", {"epochs": 3}, {}).train.epochs == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("arch: paper\ntrain:\n  epochs: lots\n")
    assert main(["train", "--config", str(bad), "--data", str(pytest.tiny)]) == 2
    assert "'epochs'" in capsys.readouterr().err


def test_noise_keeps_targets_momentum_and_centre_of_mass():
    ds = PairDataset(pytest.tiny, [10.0], "train", dtype=torch.float64)
    clean = collate([ds[0], ds[3]])
    stats = TrainingStats(strides_fs=[5.0, 20.0], dvel_rms=[0.5, 2.0])
    gen = torch.Generator().manual_seed(1)
    noisy = perturb_inputs(collate([ds[0], ds[3]]), stats, 0.2, 0.5, generator=gen)
    dr, dv = noisy.pos - clean.pos, noisy.vel - clean.vel
    # the noise is there, at the asked size: s_v(10 fs) = 1 Å/ps, √(300 K / 300 K) = 1
    assert 0.17 < float(dv.std()) < 0.23  # 0.2 × 1 Å/ps
    assert 0.002 < float(dr.std()) < 0.003  # 0.5 × ½ × 1 Å/ps × 0.01 ps
    # ... and the target is still the true position at t + Δt
    assert torch.allclose(noisy.pos + noisy.disp, clean.pos + clean.disp, atol=1e-12)
    assert torch.equal(noisy.vel_next, clean.vel_next)
    for g in range(2):
        sel = noisy.batch == g
        m = noisy.mass[sel].unsqueeze(-1)
        assert float((m * dr[sel]).sum(0).abs().max()) < 1e-10  # centre of mass kept
        assert float((m * dv[sel]).sum(0).abs().max()) < 1e-10  # momentum kept
    same = perturb_inputs(collate([ds[0]]), stats, 0.0, 0.0)
    assert torch.equal(same.pos, ds[0].pos)


def test_label_noise_moves_only_the_label():
    ds = PairDataset(pytest.tiny, [10.0], "train", dtype=torch.float64)
    stats = TrainingStats(strides_fs=[5.0, 20.0], dvel_rms=[0.5, 2.0])
    clean = collate([ds[i] for i in range(len(ds))] * 50)
    gen = torch.Generator().manual_seed(2)
    noisy = perturb_inputs(collate([ds[i] for i in range(len(ds))] * 50), stats, 0, 0, gen, 40.0)
    jitter = noisy.temperature_K - clean.temperature_K
    assert 30.0 < float(jitter.std()) < 50.0 and float(noisy.temperature_K.min()) >= 0.0
    for key in ("pos", "vel", "disp", "vel_next"):
        assert torch.equal(noisy[key], clean[key])
    # with state noise too, the state noise still scales with the true temperature
    gen1, gen2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    both = perturb_inputs(collate([ds[0]]), stats, 0.2, 0.0, gen1, 40.0)
    state_only = perturb_inputs(collate([ds[0]]), stats, 0.2, 0.0, gen2)
    assert torch.equal(both.vel, state_only.vel)


def test_fresh_samples_every_epoch_and_noisy_training(tmp_path):
    extra = ["--epochs", "2", "--set", "samples_per_epoch=3", "--set", "noise_position_rel=0.1"]
    noise = ("--set", "noise_velocity_rel=0.05", "--set", "noise_temperature_K=30")
    assert run(tmp_path, "fresh", *extra, *noise) == 0
    rows = list(csv.DictReader(open(tmp_path / "fresh" / "metrics.csv")))
    assert len(rows) == 2 and all(float(r["train_loss"]) > 0 for r in rows)
    spec = load_run_spec(
        None,
        "paper",
        {"data": str(pytest.tiny), "samples_per_epoch": 3, "out": str(tmp_path / "picks")},
        {},
    )
    from equignnmd.train import Trainer

    trainer = Trainer(spec, progress=False)
    picks = [
        list(trainer._loader(trainer.train_set, e, shuffle=True).dataset.indices) for e in (0, 1)
    ]
    assert all(len(p) == 3 for p in picks) and picks[0] != picks[1]
    assert picks[0] == list(trainer._loader(trainer.train_set, 0, shuffle=True).dataset.indices)


def test_kinetic_energy_term():
    ds = PairDataset(pytest.tiny, [10.0], "train", dtype=torch.float64)
    batch = collate([ds[0], ds[5]])
    stats = TrainingStats(strides_fs=[10.0], disp_rms=[0.03], dvel_rms=[1.0])
    exact = Prediction(batch.disp, batch.vel_next)
    loss, parts = loss_terms(exact, batch, stats, 1.0, kinetic_weight=100.0)
    assert float(loss) < 1e-20 and float(parts["kinetic"]) < 1e-20
    hot = Prediction(batch.disp, 1.01 * batch.vel_next)  # 1 % too fast: 2.01 % too much KE
    _, parts = loss_terms(hot, batch, stats, 1.0, kinetic_weight=100.0)
    assert abs(float(parts["kinetic"]) - 0.0201**2) < 1e-9
    wild = Prediction(batch.disp, 3.0 * batch.vel_next)  # 800 % too much KE: linear regime
    _, parts = loss_terms(wild, batch, stats, 1.0, kinetic_weight=100.0)
    assert abs(float(parts["kinetic"]) - 0.05 * (2 * 8.0 - 0.05)) < 1e-9
    _, no_term = loss_terms(hot, batch, stats, 1.0)
    assert "kinetic" not in no_term


def test_ballistic_position_loss_measures_errors_in_units_of_r_plus_v_dt():
    """``position_loss: ballistic``: the statistics carry r + vΔt's RMS error per stride, and
    r + vΔt itself scores about 1 at every stride on the pairs they came from."""
    from equignnmd.units import fs_to_ps

    ds = PairDataset(pytest.tiny, [1.0, 10.0], "train", dtype=torch.float64)
    stats = ds.statistics()
    assert len(stats.ballistic_rms) == 2 and 0 < stats.ballistic_rms[0] < stats.ballistic_rms[1]
    # r + vΔt is far better at 1 fs than at 10 fs relative to the displacement
    assert stats.ballistic_rms[0] / stats.disp_rms[0] < stats.ballistic_rms[1] / stats.disp_rms[1]
    for stride in (1.0, 10.0):
        one = PairDataset(pytest.tiny, [stride], "train", dtype=torch.float64)
        batch = collate([one[i] for i in range(len(one))])
        ballistic = batch.vel * fs_to_ps(batch.dt_fs)[batch.batch].unsqueeze(-1)
        pred = Prediction(ballistic, batch.vel_next)
        _, parts = loss_terms(pred, batch, stats, 0.0, position_loss="ballistic")
        assert 0.5 < float(parts["pos"]) < 2.0
        _, rel = loss_terms(pred, batch, stats, 0.0)
        assert float(rel["pos"]) < float(parts["pos"])  # the displacement scale is larger
        exact, _ = loss_terms(Prediction(batch.disp, None), batch, stats, 0.0, 0.0, "ballistic")
        assert float(exact) < 1e-20
    with pytest.raises(ValueError, match="ballistic_rms"):
        old = TrainingStats(strides_fs=[10.0], disp_rms=[0.03], dvel_rms=[1.0])
        loss_terms(pred, batch, old, 0.0, position_loss="ballistic")
    with pytest.raises(Exception, match="position_loss"):
        load_run_spec(None, "paper", {"position_loss": "relative"}, {})


def test_one_stride_scale_rule_for_trainer_and_both_models():
    """Through (0, 0) and the training points, constant beyond the largest stride, for the
    trainer's normaliser and both architectures' velocity scales (they once disagreed: at
    50 fs with strides 5/10/20 fs the trainer extrapolated to 4.2 where the models held 1.8)."""
    from equignnmd.models import build_model

    stats = TrainingStats(
        strides_fs=[10.0, 5.0, 20.0], disp_rms=[0.1, 0.05, 0.2], dvel_rms=[1.0, 0.6, 1.8]
    )
    dt = torch.tensor([2.5, 5.0, 7.5, 10.0, 20.0, 50.0], dtype=torch.float64)
    expected = torch.tensor([0.3, 0.6, 0.8, 1.0, 1.8, 1.8], dtype=torch.float64)
    torch.testing.assert_close(stride_scale(dt, stats, "dvel_rms"), expected)
    torch.testing.assert_close(
        stride_scale(dt, stats, "disp_rms"),
        torch.tensor([0.025, 0.05, 0.075, 0.1, 0.2, 0.2], dtype=torch.float64),
    )
    for arch in ("equivariant", "paper"):
        model = build_model(arch, stats=stats).double()
        torch.testing.assert_close(model.dvel_scale(dt), expected, msg=arch)


def _torchrun_train(out, *extra) -> subprocess.CompletedProcess:
    """``equignnmd train`` of the SMALL run on 2 CPU processes (gloo)."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "equignnmd", "train"]
    cmd += ["--data", str(pytest.tiny), "--out", str(out), "--device", "cpu", *SMALL, *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="gloo test on Linux")
def test_ddp_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    _torchrun_train(out, "--epochs", "1")
    info = json.loads((out / "ddp.json").read_text())
    assert info["world"] == 2
    a, b = info["shards"]["0"]
    assert a and b and not set(a) & set(b)  # disjoint shards
    assert len(set(a) | set(b)) == 6  # together they cover the training split
    c = info["param_checksums"]
    assert c[0] == c[1]  # identical weights on both ranks
    assert (out / "best.pt").exists() and (out / "metrics.csv").exists()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="gloo test on Linux")
def test_ddp_ranks_stop_together_at_the_budget_and_only_rank_0_prints(tmp_path):
    out = tmp_path / "ddp_cut"
    # 12 pairs: 3 batches of 2 per rank; 0.6 ms is spent by the first
    budget = ("--set", "max_train_samples=12", "--set", "max_minutes=0.00001")
    proc = _torchrun_train(out, "--epochs", "2", *budget)
    (row,) = csv.DictReader(open(out / "metrics.csv"))
    assert (row["batches"], row["epoch_batches"]) == ("1", "3")
    c = json.loads((out / "ddp.json").read_text())["param_checksums"]
    assert c[0] == c[1]  # both ranks took the same steps
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("epoch 1/2: train ") for line in lines) == 1, proc.stdout
    assert sum("time budget of 1e-05 min reached" in line for line in lines) == 1


def test_resume_with_a_redefined_loss_restarts_moments_and_best(tmp_path):
    assert run(tmp_path, "k", "--epochs", "1") == 0
    with pytest.warns(UserWarning, match="loss is redefined"):
        assert run(tmp_path, "k", "--epochs", "2", "--resume", "--set", "kinetic_weight=5") == 0
    rows = list(csv.DictReader(open(tmp_path / "k" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # the first epoch under the new loss is the new best, whatever the old loss was
    best = read_checkpoint(tmp_path / "k" / "best.pt")["model"]
    last = read_checkpoint(tmp_path / "k" / "last.pt")
    assert last["trainer"]["epoch"] == 1 and last["trainer"]["spec"]["train"]["kinetic_weight"] == 5
    assert all(torch.equal(best[k], last["model"][k]) for k in best)


# ------------------------------------------------------------ fine-tuning, unrolling, replay
def test_init_from_starts_from_the_checkpoint_weights(tmp_path):
    from equignnmd.train import Trainer

    assert run(tmp_path, "base", "--epochs", "1") == 0
    base = tmp_path / "base" / "best.pt"
    spec = load_run_spec(
        "configs/paper-small.yaml",
        train_overrides={
            "data": str(pytest.tiny),
            "out": str(tmp_path / "ft"),
            "strides_fs": [1.0, 10.0],
            "init_from": str(base),
            "max_train_samples": 6,
            "max_val_samples": 4,
            "epochs": 1,
        },
    )
    trainer = Trainer(spec, progress=False)
    start = read_checkpoint(base)["model"]
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, start[key])
    assert trainer.model.stats.to_dict() == load_checkpoint(base).stats.to_dict()
    bad = load_run_spec(
        "configs/equivariant-small.yaml",
        train_overrides={
            "data": str(pytest.tiny),
            "init_from": str(base),
            "out": str(tmp_path / "bad"),
        },
    )
    with pytest.raises(ValueError, match="init_from"):
        Trainer(bad, progress=False)


def test_unrolled_loss_feeds_the_model_its_own_outputs():
    from equignnmd.train import unrolled_loss

    data = PairDataset(pytest.tiny, [5.0], "train", start_every_fs=50.0, unroll=3)
    sample = data.raw(0)
    assert sample["disp_unroll"].shape == (256, 3, 3)
    batch = collate([data[0], data[1]])
    torch.manual_seed(0)
    cfg = load_run_spec("configs/equivariant-small.yaml").model
    model = build_model("equivariant", stats=data.statistics(), **cfg)
    inputs = []

    def net(b):
        inputs.append((b.pos.detach().clone(), b.vel.detach().clone()))
        return model(b)

    one, _ = unrolled_loss(net, model, batch, model.stats, 1.0, 0.0, unroll=1)
    first = model(batch)
    three, parts = unrolled_loss(net, model, batch, model.stats, 1.0, 0.0, unroll=3)
    assert len(inputs) == 1 + 3
    # stride 2 starts where the model's stride 1 ended, with its velocities
    torch.testing.assert_close(inputs[2][0], batch.pos + first.displacement.detach())
    torch.testing.assert_close(inputs[2][1], first.velocity.detach())
    assert float(parts["unrolled"]) > 0 and not torch.isclose(one, three)
    three.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_replay_rounds_label_visited_states_with_lammps(tmp_path):
    from equignnmd.data.format import open_trajectories
    from equignnmd.train import Trainer

    out = tmp_path / "replay_run"
    overrides = {
        "data": str(pytest.tiny),
        "out": str(out),
        "strides_fs": [5.0, 10.0],
        "max_train_samples": 4,
        "max_val_samples": 2,
        "epochs": 2,
        "replay_every": 1,
        "replay_origins": 1,
        "replay_steps": 2,
        "time_reversal": True,
    }
    spec = load_run_spec("configs/equivariant-small.yaml", train_overrides=overrides)
    before = len(Trainer(spec, progress=False).training_pairs())
    trainer = Trainer(spec, progress=False, overwrite=True)  # the first made out/replay
    trainer.fit()
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["replay_states"] or 0) for r in rows] == [0, 2]
    trajs = open_trajectories(out / "replay")
    assert len(trajs) == 2
    for tr in trajs:
        # frames every gcd(5, 10) = 5 fs up to 10 fs, from the visited state, by LAMMPS NVE
        assert tr.n_frames == 3 and tr.frame_interval_fs == 5.0
        etot = tr.thermo("etotal_eV")
        assert abs(etot[-1] - etot[0]) < 1e-3 * abs(etot[0])
    # the replay pairs join training: per state two 5-fs pairs and one 10-fs pair, doubled by
    # time reversal
    assert len(trainer.training_pairs()) == before + 2 * (2 + 1) * 2
    # a redone round replaces its files instead of adding to them
    trainer.replay_round(1)
    assert len(trainer.replay) == 2
