"""`equignnmd evaluate` end to end on tiny data, and the quickstart's pieces."""

import json

import pytest

from equignnmd.cli import main


@pytest.mark.slow
def test_evaluate_writes_report_metrics_and_plots(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                "paper-small",
                "--data",
                str(tiny_dataset),
                "--out",
                str(run),
                "--epochs",
                "1",
                "--strides",
                "1,10",
                "--batch-size",
                "2",
                "--set",
                "max_train_samples=4",
                "--set",
                "max_val_samples=4",
                "--no-progress",
            ]
        )
        == 0
    )
    out = tmp_path / "report"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(run / "best.pt"),
                "--data",
                str(tiny_dataset),
                "--out",
                str(out),
                "--dt",
                "1,10,20,1000",
                "--rollout-dt",
                "5,10",
                "--rollout-ps",
                "0.25",
                "--tau-fs",
                "200",
                "--max-pairs",
                "4",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["table4"]) == {"1.0", "10.0", "20.0"}
    assert any("1000" in n for n in metrics["notes"])
    row = metrics["table4"]["10.0"]
    assert {"model", "zero", "ballistic", "taylor"} <= set(row)
    assert row["taylor"]["pos_mean_A"] < row["zero"]["pos_mean_A"]
    assert set(metrics["table6"]) == {"300.0", "350.0"}
    assert [(r["stride_fs"], r["steps_requested"]) for r in metrics["rollouts"]] == [
        (5.0, 50),
        (10.0, 25),
    ]
    assert len({png for r in metrics["rollouts"] for png in r["plots"].values()}) == 8
    long, ro = metrics["rollouts"]
    assert ro["temperature_K"] == 350.0 and ro["tau_fs"] == 200.0
    # 51 frames at 5 fs are scored; 26 at 10 fs are fewer than the minimum: null and "–"
    from equignnmd.evaluate import MIN_SCORE_FRAMES
    from equignnmd.fidelity import FidelityConfig

    assert MIN_SCORE_FRAMES == FidelityConfig().min_frames == 50  # one rule for both reports
    assert long["steps_completed"] == 50 and long["frames"] == 51, long["stopped"]
    assert ro["steps_completed"] == 25 and ro["frames"] == 26, ro["stopped"]
    for key in ("rdf_l1", "msd_ratio_end", "temperature_mean_K", "vdos_overlap"):
        assert isinstance(long[key], float), key
        assert ro[key] is None, key
    for key in (
        "rdf_l1",
        "msd_ratio_end",
        "temperature_mean_K",
        "vdos_overlap",
        "steps_completed",
        "lammps_temperature_mean_K",
    ):
        assert key in ro
    report = (out / "report.md").read_text()
    assert "Table 4" in report and "Table 6" in report and "LAMMPS" in report
    rows = {
        line.split(" | ")[1]: line for line in report.splitlines() if line.startswith("| 350 |")
    }
    assert "CSVR, τ = 200 fs (40 strides)" in rows["5"] and "(20 strides)" in rows["10"]
    assert f"{long['rdf_l1']:.4f}" in rows["5"] and "–" not in rows["5"]
    assert rows["10"].count("| – ") >= 4, rows["10"]  # RDF, MSD, T drift, VDOS
    assert f"– : fewer than {MIN_SCORE_FRAMES} frames" in report
    assert "the rollout has 26 frame(s) (25 of 25 strides), fewer than the 50" in report
    for png in list(ro["plots"].values()) + [metrics["plots"]["error_vs_dt"]]:
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_evaluate_reports_a_rollout_that_fails_at_once(tiny_dataset, tmp_path):
    """A real tiny ``paper`` model whose displacement scale (vel_rms · Δt) is 1000× too large
    scatters the atoms on its first step; the report is still written, with the stop message,
    the steps done, null (metrics, strict JSON) / "—" (report) scores and no plots for that
    rollout."""
    import torch

    from equignnmd.checkpoint import save_checkpoint
    from equignnmd.config import read_yaml
    from equignnmd.models import TrainingStats, build_model

    torch.manual_seed(0)
    stats = TrainingStats(vel_rms=5000.0, strides_fs=[10.0], disp_rms=[50.0], dvel_rms=[1.0])
    model = build_model("paper", stats, **read_yaml("configs/paper-small.yaml")["model"])
    ckpt = tmp_path / "exploding.pt"
    save_checkpoint(ckpt, model)
    out = tmp_path / "report"
    args = ["evaluate", "--checkpoint", str(ckpt), "--data", str(tiny_dataset)]
    args += ["--out", str(out), "--dt", "10", "--rollout-dt", "10", "--rollout-ps", "0.1"]
    args += ["--tau-fs", "200", "--max-pairs", "2"]
    assert main(args) == 0
    text = (out / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON for jq and friends
    metrics = json.loads(text)
    (ro,) = metrics["rollouts"]
    assert ro["steps_requested"] == 10 and ro["steps_completed"] < 2
    assert "rollout unstable at step 1" in ro["stopped"], ro["stopped"]
    for key in ("rdf_l1", "msd_ratio_end", "temperature_mean_K", "vdos_overlap"):
        assert ro[key] is None, key
    assert ro["plots"] == {} and ro["lammps_wall_s"] == 0.0  # no LAMMPS run to compare with
    assert not list(out.glob("rdf_*.png"))
    assert "10.0" in metrics["table4"]  # the one-shot tables are still there
    report = (out / "report.md").read_text()
    line = next(x for x in report.splitlines() if x.startswith("| 350 | 10 | CSVR, τ = 200 fs"))
    assert f"| {ro['steps_completed']} / 10 | – | – | – / – | – | – |" in line, line
    assert "nan" not in report.lower()
    assert f"stopped: {ro['stopped']}" in report
    assert not list(out.glob("*.tmp*"))  # written through temporary names, all renamed


def test_lammps_reference_runs_only_as_far_as_the_rollout(tiny_dataset, tmp_path, monkeypatch):
    """A free-flight model that turns NaN on its 55th step: 54 steps (55 frames, above the
    50-frame minimum) are scored against a LAMMPS reference of 54 strides (the real one, call
    recorded), not the 60 asked for."""
    import math

    from test_rollout import Ballistic

    import equignnmd.data.reference_md as reference_md
    from equignnmd.evaluate import EvaluateConfig, rollout_vs_lammps

    class NanOnStep(Ballistic):
        def __init__(self, at: int):
            super().__init__()
            self.at = at

        def forward(self, batch):
            pred = super().forward(batch)
            if len(self.seen_dt_fs) >= self.at:
                pred.displacement[3] = float("nan")
            return pred

    asked = []
    real = reference_md.lammps_reference

    def recording(*args, **kwargs):
        asked.append(args[4])  # n_frames: strides after the start frame
        return real(*args, **kwargs)

    monkeypatch.setattr(reference_md, "lammps_reference", recording)
    cfg = EvaluateConfig(checkpoint="-", data=str(tiny_dataset), rollout_steps=60)
    cfg.rollout_tau_fs = 200.0
    # 1-fs strides: 55 fs of free flight bring no two atoms within the guard's 1.5 Å
    row = rollout_vs_lammps(NanOnStep(at=55), cfg, 350.0, 1.0, [350.0], tmp_path)
    assert row["steps_requested"] == 60 and row["steps_completed"] == 54
    assert "step 55" in row["stopped"] and "non-finite" in row["stopped"]
    assert asked == [54]
    for key in ("rdf_l1", "msd_ratio_end", "temperature_mean_K", "lammps_temperature_mean_K"):
        assert math.isfinite(row[key]), key
    assert sorted(row["plots"]) == ["msd", "rdf", "temperature", "vdos"]
    assert all((tmp_path / png).exists() for png in row["plots"].values())


def test_rollout_cli_from_dataset_frame_and_file(tiny_dataset, tmp_path, capsys):
    import ase.io

    from equignnmd.checkpoint import save_checkpoint
    from equignnmd.config import read_yaml, resolve_config
    from equignnmd.models import build_model

    model = build_model("equivariant", **read_yaml(resolve_config("equivariant-small"))["model"])
    ckpt = tmp_path / "eq.pt"
    save_checkpoint(ckpt, model)
    out = tmp_path / "ro"
    rc = main(
        [
            "rollout",
            "--checkpoint",
            str(ckpt),
            "--data",
            str(tiny_dataset),
            "--data-temperature",
            "350",
            "--frame",
            "10",
            "--dt",
            "1",
            "--steps",
            "6",
            "--thermostat",
            "csvr",
            "--replicas",
            "2",
            "--write-every",
            "2",
            "--out",
            str(out),
            "--no-progress",
            "--max-temperature-factor",
            "50",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert "ns/day" in capsys.readouterr().out
    frames = ase.io.read(out / "replica_001.extxyz", ":")
    assert len(frames) == 4  # steps 0, 2, 4, 6
    rows = (out / "thermo.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,time_ps,replica,temperature_K")
    # the last frame written is a valid starting structure for another rollout
    ase.io.write(tmp_path / "start.extxyz", frames[-1])
    rc = main(
        [
            "rollout",
            "--checkpoint",
            str(ckpt),
            "--structure",
            str(tmp_path / "start.extxyz"),
            "--dt",
            "1",
            "--steps",
            "3",
            "--format",
            "lammps-dump",
            "--device",
            "auto",  # one device rule for every command (equignnmd.device.pick_device)
            "--out",
            str(tmp_path / "ro2"),
            "--no-progress",
            "--max-temperature-factor",
            "50",
        ]
    )
    assert rc == 0
    dump = ase.io.read(tmp_path / "ro2" / "replica_000.lammpstrj", ":", format="lammps-dump-text")
    assert len(dump) >= 1 and len(dump[0]) == 256


def test_rollout_cli_bad_frame_is_clear(tiny_dataset, tmp_path, capsys):
    rc = main(
        [
            "rollout",
            "--checkpoint",
            "nope.pt",
            "--data",
            str(tiny_dataset),
            "--dt",
            "1",
            "--steps",
            "1",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    assert rc == 2 and "nope.pt" in capsys.readouterr().err


@pytest.mark.slow
def test_quickstart_runs_and_reuses(tmp_path, capsys):
    from equignnmd.quickstart import DEMO_CHECKPOINT, quickstart

    kw = dict(
        epochs=1,
        data_overrides={"equilibration_ps": 0.1, "production_ps": 0.2},
        train_overrides={"max_train_samples": 4, "max_val_samples": 4, "strides_fs": [5.0, 10.0]},
        rollout_steps=4,
    )
    report = quickstart(tmp_path / "qs", **kw)
    assert (report / "report.md").exists() and (report / "metrics.json").exists()
    captured = capsys.readouterr()
    text = captured.out
    assert "report:" in text and "plots:" in text and "demo:" in text
    # both rollouts at the stride and thermostat where the models are stable, and it says so
    settings = "Δt = 20 fs, CSVR, τ = 200 fs (10 strides)"
    assert f"[3/3] evaluation against the baselines and LAMMPS ({settings})" in text
    assert f"{DEMO_CHECKPOINT} ({settings})" in text
    (ro,) = json.loads((report / "metrics.json").read_text())["rollouts"]
    assert (ro["stride_fs"], ro["thermostat"], ro["tau_fs"]) == (20.0, "csvr", 200.0)
    # progress for every stage: evaluation lines, and the rollouts' bars on stderr
    assert "one-shot errors at 350 K" in text and "LAMMPS EAM reference" in text
    assert captured.err.count("| 4/4 [") >= 2, captured.err[-2000:]  # 4 strides, 2 rollouts
    # its own wall time and machine, printed and in the report
    md = (report / "report.md").read_text()
    for where in (text, md):
        assert "Wall time" in where and "CPUs, torch on" in where and settings in where
    assert "too short to score (fewer than 50 frames)" in text  # 4 strides: not scored
    assert (tmp_path / "qs" / "demo_rollout" / "thermo.csv").exists()
    data_file = tmp_path / "qs" / "data" / "T0300K.h5"
    ckpt = tmp_path / "qs" / "run" / "last.pt"
    stamps = data_file.stat().st_mtime_ns, ckpt.stat().st_mtime_ns
    quickstart(tmp_path / "qs", **kw)
    assert (data_file.stat().st_mtime_ns, ckpt.stat().st_mtime_ns) == stamps
    assert "reusing" in capsys.readouterr().out
