"""Pair dataset: splits in time, held-out temperatures, lazy multi-worker loading, errors."""

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from equignnmd.data.dataset import PairDataset
from equignnmd.data.format import open_trajectories
from equignnmd.units import FTM2V


def test_splits_do_not_cross_the_boundary(tiny_dataset):
    strides = [1, 10, 20]
    train = PairDataset(tiny_dataset, strides, "train")
    val = PairDataset(tiny_dataset, strides, "val")
    test = PairDataset(tiny_dataset, strides, "test")
    n = open_trajectories(tiny_dataset)[0].n_frames
    boundary = int(0.8 * n)
    assert np.all(train.index.start + train.index.offset < boundary)
    assert np.all(val.index.start >= boundary)
    assert np.all(val.index.start + val.index.offset < n)
    temps = lambda ds: {ds.trajectories[k].temperature_K for k in ds.index.traj}  # noqa: E731
    assert temps(train) == temps(val) == {300.0}
    assert temps(test) == {350.0}
    assert set(np.unique(train.index.stride_fs)) == {1.0, 10.0, 20.0}


def test_sample_targets_are_unwrapped_displacements(tiny_dataset):
    ds = PairDataset(tiny_dataset, [10], "train", dtype=torch.float64)
    tr = ds.trajectories[0]
    i = 5
    sample = ds[i]
    t, off = ds.index.start[i], ds.index.offset[i]
    start, end = tr.frame(t), tr.frame(t + off)
    # the NPT barostat moved the box between the frames; the target is the end frame in the
    # start frame's box: the same fractional coordinates up to one shift of all atoms
    assert not np.array_equal(start["cell"], end["cell"])
    frac_target = np.linalg.solve(start["cell"].T, (start["positions"] + sample.disp.numpy()).T)
    frac_end = np.linalg.solve(end["cell"].T, end["positions"].T)
    shift = frac_target - frac_end
    assert np.abs(shift - shift.mean(axis=1, keepdims=True)).max() < 1e-12
    # and that shift puts the centre of mass where the momentum takes it
    v_mean = 0.5 * (start["velocities"] + end["velocities"]).mean(axis=0)
    np.testing.assert_allclose(sample.disp.numpy().mean(axis=0), v_mean * 0.01, atol=1e-8)
    assert np.allclose(sample.vel_next.numpy(), tr.read("velocities", t + off))
    assert sample.dt_fs.item() == 10.0 and sample.temperature_K.item() == 300.0
    assert sample.descriptors.shape == (256, 5) and sample.forces.shape == (256, 3)
    # positions are wrapped into the cell for the model
    frac = torch.linalg.solve(sample.cell[0].T, sample.pos.T).T
    assert frac.min() >= 0 and frac.max() < 1
    # ~ballistic at 10 fs: displacement ≈ v·Δt
    assert np.abs(sample.disp.numpy() - sample.vel.numpy() * 0.01).mean() < 0.03


def test_the_barostat_motion_of_the_box_is_not_in_the_targets(tiny_dataset):
    """At 1 fs the recorded displacement is r + vΔt + ½ F/m Δt² to O(Δt³) plus the NPT
    barostat's rescaling of every coordinate; the targets keep the dynamics and drop the box
    motion, so their Taylor residual is far below the recorded one."""
    ds = PairDataset(tiny_dataset, [1], "train", dtype=torch.float64, start_every_fs=20.0)
    tr = ds.trajectories[0]
    dt_ps = 0.001
    recorded, targets = [], []
    for i in range(len(ds)):
        r = ds.raw(i)
        t, off = ds.index.start[i], ds.index.offset[i]
        accel = FTM2V * r["forces"] / r["masses"][:, None]
        taylor = r["velocities"] * dt_ps + 0.5 * accel * dt_ps**2
        raw = tr.read("positions", t + off) - tr.read("positions", t)
        recorded.append(np.linalg.norm(raw - taylor, axis=1).mean())
        targets.append(np.linalg.norm(r["disp"] - taylor, axis=1).mean())
    assert np.mean(targets) < 0.2 * np.mean(recorded), (np.mean(targets), np.mean(recorded))


def test_multiworker_loader_is_safe(tiny_dataset):
    ds = PairDataset(tiny_dataset, [5], "train", max_samples=12)
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(b.num_graphs for b in batches) == 12
    single = next(iter(DataLoader(ds, batch_size=4)))
    assert torch.equal(batches[0].disp, single.disp)


def test_statistics_from_training_split(tiny_dataset):
    stats = PairDataset(tiny_dataset, [1, 10], "train").statistics()
    assert 3.0 < stats.vel_rms < 8.0  # sqrt(kT/m) at 300 K ≈ 3.0 Å/ps; equipartition + NPT
    assert stats.disp_rms[1] > 5 * stats.disp_rms[0]
    assert stats.temperature_range_K == (300.0, 300.0)
    assert stats.dt_range_fs == (1.0, 10.0)
    assert abs(stats.number_density - 0.0603) < 0.003


def test_statistics_compute_missing_descriptors(tiny_dataset, tmp_path):
    """A dataset without recorded descriptors (as ``equignnmd convert`` writes) gets descriptor
    statistics from the torch implementation, close to LAMMPS' own on the same frames."""
    import shutil

    import h5py

    copy = tmp_path / "no_desc"
    shutil.copytree(tiny_dataset, copy)
    for path in copy.glob("*.h5"):
        with h5py.File(path, "r+") as f:
            del f["descriptors"]  # optional in the format (see equignnmd/data/format.py)
    without = PairDataset(copy, [1, 10], "train")
    assert not any(tr.has_descriptors for tr in without.trajectories)
    assert "descriptors" not in without.raw(0)  # the file really lost them
    recorded = PairDataset(tiny_dataset, [1, 10], "train").statistics(max_pairs_per_stride=32)
    computed = without.statistics(max_pairs_per_stride=32)
    # same sampled frames, so everything but the descriptor source is identical
    assert computed.vel_rms == recorded.vel_rms and computed.disp_rms == recorded.disp_rms
    # torch CSP/CNA/Q4/Q6/CN match LAMMPS to ~1e-4 on real frames (CNA, CN exactly)
    np.testing.assert_allclose(computed.desc_mean, recorded.desc_mean, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(computed.desc_std, recorded.desc_std, rtol=1e-3, atol=1e-4)
    assert 11.0 < computed.desc_mean[4] < 12.5  # CN of FCC at 300 K, not the 0/1 fallback


def test_bad_strides_are_clear_errors(tiny_dataset):
    with pytest.raises(ValueError, match=r"T0300K.h5.*longer than the trajectory"):
        PairDataset(tiny_dataset, [1000], "train")
    with pytest.raises(ValueError, match=r"frame_interval_fs"):
        PairDataset(tiny_dataset, [2.5], "train")
    with pytest.raises(ValueError, match="strides"):
        PairDataset(tiny_dataset, "ten", "train")


def test_box_smaller_than_twice_cutoff(tiny_dataset):
    with pytest.raises(ValueError, match=r"T0300K.h5.*'cell'.*2 × cutoff"):
        PairDataset(tiny_dataset, [1], "train", cutoff=9.0)


def test_missing_folder_and_index(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PairDataset(tmp_path / "none", [1])
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        PairDataset(tmp_path, [1])


def test_invalid_index_names_the_file(tmp_path):
    """A broken dataset.json is named, with the JSON error's position and what was expected
    (not a bare 'Expecting value: line 2 column 1')."""
    index = tmp_path / "dataset.json"
    index.write_text('{"format": "equignnmd-dataset/1",\n')
    with pytest.raises(ValueError) as err:
        PairDataset(tmp_path, [1])
    msg = str(err.value)
    assert msg.startswith(f"{index}: not valid JSON (Expecting") and "line 2 column 1" in msg
    assert "expected the dataset index, a JSON object with 'format'" in msg, msg
    index.write_text("[]")
    with pytest.raises(ValueError, match=r"dataset\.json: holds a JSON list; expected"):
        PairDataset(tmp_path, [1])


def test_nan_and_nonincreasing_time_rejected(tiny_dataset, tmp_path):
    import shutil

    import h5py

    from equignnmd.data.format import Trajectory

    copy = tmp_path / "copy.h5"
    shutil.copy(open_trajectories(tiny_dataset)[0].path, copy)
    with h5py.File(copy, "r+") as f:
        f["time_fs"][3] = f["time_fs"][2]
    with pytest.raises(ValueError, match=r"copy.h5.*'time_fs'.*frame 3"):
        Trajectory(copy)

    # NaN in time_fs: every comparison with NaN is False, so the ordering test alone misses it
    shutil.copy(open_trajectories(tiny_dataset)[0].path, copy)
    with h5py.File(copy, "r+") as f:
        f["time_fs"][4] = np.nan
    with pytest.raises(ValueError, match=r"copy.h5.*'time_fs'.*frame 4.*expected finite"):
        Trajectory(copy)

    # NaN in one coordinate of one atom of frame 7: the file opens (the check is per frame,
    # not a scan of the whole file), reading that frame fails, other frames still read
    shutil.copy(open_trajectories(tiny_dataset)[0].path, copy)
    with h5py.File(copy, "r+") as f:
        f["positions"][7, 42, 1] = np.nan
        f["forces"][9, 3, 0] = np.inf
    tr = Trajectory(copy)
    assert np.isfinite(tr.frame(6)["positions"]).all()
    expected = r"copy.h5: field 'positions' of frame 7 .*atom 42.*expected finite values"
    with pytest.raises(ValueError, match=expected):
        tr.frame(7)
    with pytest.raises(ValueError, match=expected):
        tr.read("positions")  # whole-array reads (baseline tables) are checked too
    with pytest.raises(ValueError, match=expected):
        tr.read("positions", np.array([2, 7, 8]))
    with pytest.raises(ValueError, match=r"copy.h5: field 'forces' of frame 9 .*atom 3.*finite"):
        tr.frame(9)
    # a frame read without the poisoned field is fine
    assert np.isfinite(tr.frame(9, fields=("positions", "velocities"))["positions"]).all()


def test_time_reversed_pairs_are_the_forward_pairs_run_backwards(tiny_dataset):
    forward = PairDataset(tiny_dataset, [5.0], "train", start_every_fs=20.0)
    both = PairDataset(tiny_dataset, [5.0], "train", start_every_fs=20.0, time_reversal=True)
    n = len(forward)
    assert len(both) == 2 * n and both.summary()["time_reversal"]
    for i in (0, n - 1):
        a, b = forward.raw(i), both.raw(n + i)
        assert not a["reversed"] and b["reversed"]
        # the reversed sample starts where the forward one ends, with the velocities flipped,
        # and its targets lead back to the forward start (each pair in its own start box: the
        # barostat's strain over 5 fs, ~3e-4 of the displacement, is all that differs)
        t, off = forward.index.start[i], forward.index.offset[i]
        end = forward.trajectories[0].read("positions", t + off)
        np.testing.assert_allclose(b["positions"], end)
        np.testing.assert_allclose(b["velocities"], -a["vel_next"])
        np.testing.assert_allclose(b["disp"], -a["disp"], rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(b["vel_next"], -a["velocities"])
        assert b["dt_fs"] == a["dt_fs"] and b["temperature_K"] == a["temperature_K"]
    data = both[n]
    np.testing.assert_allclose(data.vel.numpy(), -forward.raw(0)["vel_next"], rtol=1e-6)
    with pytest.raises(IndexError):
        both.raw(2 * n)
