"""Accuracy and stability of a trained model through the evaluation machinery.

Uses ``pretrained:<arch>-al`` when the package ships it; otherwise trains one briefly here on
the small generated dataset (configs/<arch>-small.yaml by default, strides 5–50 fs). Such a
model is far from converged: the rows exercise the machinery and show where a model stands
against the baselines, not what the architecture can reach.
"""

from __future__ import annotations

import math
import time

import pytest
from _engine import short_error
from _plan import ARCHS

from equignnmd.config import resolve_config
from equignnmd.evaluate import MIN_SCORE_FRAMES

pytestmark = pytest.mark.accuracy
EVAL_STRIDES_FS = [1.0, 5.0, 10.0, 20.0, 50.0]
ROLLOUT_STRIDES_FS = [10.0, 20.0, 50.0]
TRAIN_STRIDES_FS = [5.0, 10.0, 20.0, 50.0]


@pytest.fixture(scope="session")
def trained(plan, bench_dataset, tmp_path_factory):
    """``get(arch) -> (model, checkpoint path, description)``, trained once per session."""
    import equignnmd
    from equignnmd.train import Trainer, load_run_spec

    cache: dict[str, tuple] = {}

    def get(arch: str):
        if arch in cache:
            return cache[arch]
        name = f"pretrained:{arch}-al"
        try:
            model = equignnmd.load_checkpoint(name, device="cpu")
            train = (getattr(model, "data_summary", None) or {}).get("train") or {}
            text = (
                f"`{name}` ({sum(p.numel() for p in model.parameters()):,} parameters; trained "
                f"on {train.get('root', '?')}, Δt {train.get('strides_fs', '?')} fs, "
                f"{train.get('samples', '?')} samples)"
            )
            cache[arch] = (model, name, text)
            return cache[arch]
        except FileNotFoundError:
            pass
        suffix = "-small" if plan.accuracy_configs == "small" else ""
        config = resolve_config(f"{arch}{suffix}")
        out = tmp_path_factory.mktemp(f"train_{arch}")
        spec = load_run_spec(
            config,
            train_overrides={
                "data": str(bench_dataset),
                "out": str(out),
                "epochs": plan.accuracy_epochs,
                "batch_size": 4,
                "strides_fs": TRAIN_STRIDES_FS,
                "max_train_samples": plan.accuracy_samples,
                "max_val_samples": 16,
                "device": "cpu",
                "seed": 0,
            },
        )
        t0 = time.perf_counter()
        Trainer(spec, progress=False).fit()
        wall = time.perf_counter() - t0
        ckpt = out / "best.pt"
        model = equignnmd.load_checkpoint(ckpt, device="cpu")
        text = (
            f"trained here: configs/{config.name}, {plan.accuracy_epochs} epochs × "
            f"{plan.accuracy_samples} samples, Δt {', '.join(f'{s:g}' for s in TRAIN_STRIDES_FS)}"
            f" fs, {wall:.0f} s (not converged)"
        )
        cache[arch] = (model, ckpt, text)
        return cache[arch]

    return get


def _fmt(x, spec: str) -> str:
    return format(x, spec) if x is not None and math.isfinite(x) else "–"


def _eval_config(plan, ckpt, data):
    from equignnmd.evaluate import EvaluateConfig

    return EvaluateConfig(
        checkpoint=str(ckpt),
        data=str(data),
        strides_fs=list(EVAL_STRIDES_FS),
        max_pairs=plan.eval_pairs,
        rollout_steps=plan.rollout_steps,
        rollout_thermostat="csvr",
        batch_size=4,
        seed=0,
    )


def _test_temperature(data) -> float:
    from equignnmd.data.format import read_index

    meta = read_index(data)
    test = meta.get("test_temperatures_K") or [meta["trajectories"][0]["temperature_K"]]
    return float(test[0])


@pytest.mark.parametrize("arch", ARCHS)
def test_error_vs_dt(arch, plan, results, trained, bench_dataset):
    if not plan.accuracy:
        pytest.skip(f"accuracy is not part of the {plan.mode} mode")
    from equignnmd.evaluate import PAPER_TABLE4_A, table4

    model, ckpt, source = trained(arch)
    results.note("accuracy", f"{arch}: {source}")
    test_T = _test_temperature(bench_dataset)
    table, notes = table4(model, _eval_config(plan, ckpt, bench_dataset), test_T)
    for note in notes:
        results.note("accuracy", note)
    assert table
    for dt, row in table.items():
        cells = {
            f"{n}_A": row[n]["pos_mean_A"] for n in ("zero", "ballistic", "taylor") if n in row
        }
        results.add(
            "accuracy",
            {
                "system": arch,
                "dt_fs": float(dt),
                "model_A": row["model"]["pos_mean_A"],
                **cells,
                "paper_A": PAPER_TABLE4_A.get(int(round(float(dt)))),
                "notes": f"{test_T:g} K held out, {row['model']['atoms']} atom-samples",
            },
        )
        assert math.isfinite(row["model"]["pos_mean_A"]) and row["model"]["pos_mean_A"] >= 0


@pytest.mark.parametrize("stride", ROLLOUT_STRIDES_FS, ids=[f"{s:g}fs" for s in ROLLOUT_STRIDES_FS])
@pytest.mark.parametrize("arch", ARCHS)
def test_rollout_stability(arch, stride, plan, results, trained, bench_dataset, tmp_path):
    if not plan.accuracy:
        pytest.skip(f"rollout stability is not part of the {plan.mode} mode")
    from equignnmd.evaluate import rollout_vs_lammps

    model, ckpt, source = trained(arch)
    results.note("stability", f"{arch}: {source}")
    test_T = _test_temperature(bench_dataset)
    cfg = _eval_config(plan, ckpt, bench_dataset)
    try:
        ro = rollout_vs_lammps(model, cfg, test_T, stride, [test_T], tmp_path)
    except RuntimeError as err:  # the guard fired within the first two steps
        results.add(
            "stability",
            {
                "system": arch,
                "dt_fs": stride,
                "steps": f"< 2 / {plan.rollout_steps}",
                "notes": short_error(err, 400),
            },
        )
        return
    results.add(
        "stability",
        {
            "system": arch,
            "dt_fs": stride,
            "steps": f"{ro['steps_completed']} / {ro['steps_requested']}",
            "t_mean": " / ".join(
                _fmt(ro[k], ".0f") for k in ("temperature_mean_K", "lammps_temperature_mean_K")
            ),
            "t_drift": ro["temperature_drift_K_per_ps"],
            "rdf_l1": ro["rdf_l1"],
            "msd_ratio": ro["msd_ratio_end"],
            "wall": f"{ro['surrogate_wall_s']:.1f} / {ro['lammps_wall_s']:.1f}",
            "notes": (f"guard: {ro['stopped']}" if ro.get("stopped") else "")
            + f"{'; ' if ro.get('stopped') else ''}{test_T:g} K, CSVR",
        },
    )
    assert ro["steps_completed"] >= 2
    # scored from MIN_SCORE_FRAMES frames on (a guard stop before that leaves "–")
    assert math.isfinite(ro["rdf_l1"]) == (ro["frames"] >= MIN_SCORE_FRAMES)
