"""`equignnmd evaluate` end to end on tiny data, and the quickstart's pieces."""

import json

from equignnmd.cli import main


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
                "--rollout-steps",
                "6",
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
    ro = metrics["rollouts"][0]
    assert ro["temperature_K"] == 350.0 and ro["stride_fs"] == 10.0
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
    for png in list(ro["plots"].values()) + [metrics["plots"]["error_vs_dt"]]:
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
