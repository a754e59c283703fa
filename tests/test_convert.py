"""``equignnmd.data.convert``: LAMMPS dumps and ASE trajectories → dataset folder."""

from __future__ import annotations

import gzip
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from equignnmd import units
from equignnmd.data.convert import convert
from equignnmd.data.format import open_trajectories, read_index

A = 4.05
L = 4 * A
ORTHO = np.diag([L, L, L])
TRI = np.array([[L, 0.0, 0.0], [1.5, L, 0.0], [-1.0, 0.8, L]])
TIMESTEP_FS = 2.0
STEPS = np.arange(6) * 10  # a frame every 20 fs
ZERO = np.zeros(3)
M_AL = 26.9815385  # amu, ase.data.atomic_masses of Al


def kinetic_temperature(v, masses=M_AL):
    """Kinetic temperature (K) of velocities ``v`` (N, 3) Å/ps: COM removed, 3N − 3 dof."""
    v = v - v.mean(axis=0)
    dof = 3 * (len(v) - 1)
    return np.sum(masses * v**2) * units.MVV2E / (dof * units.KB_EV_PER_K)


def crystal(cell, origin=ZERO, seed=0, n_frames=6, frame_fs=20.0, images=True, temperature_K=300.0):
    """Truth: 4×4×4 FCC Al cells moving with constant velocities, exactly at kinetic
    temperature ``temperature_K`` (so a label of that temperature is right). Returns (u, v, f)
    with ``u`` (F, N, 3) unwrapped absolute positions [Å], ``v`` (N, 3) Å/ps, ``f`` (N, 3)
    eV/Å. The motion is a straight line, so Δr/Δt equals ``v`` between any two frames."""
    rng = np.random.default_rng(seed)
    basis = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    s0 = ((grid[:, None, :] + basis[None]).reshape(-1, 3)) / 4
    s0 = s0 + rng.normal(0, 0.004, s0.shape)  # some atoms start just outside [0, 1)
    if images:  # atoms that already went round the box a few times
        s0 = s0 + rng.integers(-2, 3, s0.shape)
    v = rng.normal(0, 8.0, s0.shape)
    v = v - v.mean(axis=0)  # no drift, then scaled to the temperature (300 K: ~3 Å/ps)
    v = v * np.sqrt(temperature_K / kinetic_temperature(v))  # up to ~0.2 Å per 20-fs frame
    t_ps = np.arange(n_frames) * frame_fs / 1000
    u = origin + s0 @ cell + v[None] * t_ps[:, None, None]
    return u, v, rng.normal(0, 0.5, s0.shape)


def split(u, cell, origin):
    """Unwrapped positions → (wrapped fractional coordinates, image flags)."""
    s_u = (u - origin) @ np.linalg.inv(cell)
    img = np.floor(s_u)
    return s_u - img, img


def box_lines(cell, origin, general=False):
    if general:  # LAMMPS general triclinic: lattice vectors a, b, c and the origin
        return "ITEM: BOX BOUNDS abc origin pp pp pp\n" + "".join(
            f"{a:.12f} {b:.12f} {c:.12f} {o:.12f}\n" for (a, b, c), o in zip(cell, origin)
        )
    lo = origin
    if np.count_nonzero(cell - np.diag(np.diag(cell))) == 0:
        hi = origin + np.diag(cell)
        return "ITEM: BOX BOUNDS pp pp pp\n" + "".join(
            f"{a:.12f} {b:.12f}\n" for a, b in zip(lo, hi)
        )
    xy, xz, yz = cell[1, 0], cell[2, 0], cell[2, 1]
    xlo, ylo, zlo = lo
    xhi, yhi, zhi = lo + np.diag(cell)
    rows = [
        (xlo + min(0, xy, xz, xy + xz), xhi + max(0, xy, xz, xy + xz), xy),
        (ylo + min(0, yz), yhi + max(0, yz), xz),
        (zlo, zhi, yz),
    ]
    return "ITEM: BOX BOUNDS xy xz yz pp pp pp\n" + "".join(
        f"{a:.12f} {b:.12f} {c:.12f}\n" for a, b, c in rows
    )


def write_dump(
    path,
    u,
    v,
    cell,
    origin=ZERO,
    f=None,
    mode="x+img",
    steps=STEPS,
    seed=1,
    element=False,
    velocities=True,
    drop_atom_in_frame=None,
    general=False,
    time_ps=False,
):
    """A LAMMPS text dump with shuffled columns and shuffled atom order in every frame."""
    rng = np.random.default_rng(seed)
    n = u.shape[1]
    out = []
    for k, step in enumerate(steps):
        s, img = split(u[k], cell, origin)
        cols = {"id": np.arange(1, n + 1)}
        cols["element" if element else "type"] = np.array(["Al"] * n) if element else np.ones(n)
        pos = {
            "x": origin + s @ cell,
            "xs": s,
            "xu": u[k],
            "xsu": (u[k] - origin) @ np.linalg.inv(cell),
        }[mode.split("+")[0]]
        names = {"x": "x y z", "xs": "xs ys zs", "xu": "xu yu zu", "xsu": "xsu ysu zsu"}
        cols.update(zip(names[mode.split("+")[0]].split(), pos.T))
        if mode.endswith("+img"):
            cols.update(zip(("ix", "iy", "iz"), img.T))
        if velocities:
            cols.update(zip(("vx", "vy", "vz"), v.T))
        if f is not None:
            cols.update(zip(("fx", "fy", "fz"), f.T))
        order = list(rng.permutation(list(cols)))
        rows = rng.permutation(n)
        if drop_atom_in_frame == k:
            rows = rows[:-1]
        text = []
        for name in order:
            c = cols[name][rows]
            if name in ("id", "type", "ix", "iy", "iz"):
                text.append(np.char.mod("%d", c.astype(int)))
            elif name == "element":
                text.append(c)
            else:
                text.append(np.char.mod("%.12f", c))
        lines = [" ".join(r) for r in zip(*text)]
        out.append(
            (f"ITEM: TIME\n{step * TIMESTEP_FS / 1000:.10g}\n" if time_ps else "")
            + f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{len(rows)}\n"
            + box_lines(cell, origin, general)
            + f"ITEM: ATOMS {' '.join(order)}\n"
            + "\n".join(lines)
            + "\n"
        )
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write("".join(out))
    else:
        Path(path).write_text("".join(out))
    return path


DUMP_CASES = {  # name: (cell, origin, mode, element, unwrapped exactly, i.e. no continuity)
    "ortho_x_img": (ORTHO, np.zeros(3), "x+img", False, True),
    "ortho_xs": (ORTHO, np.array([-3.0, 1.0, 0.5]), "xs", False, False),
    "ortho_xu": (ORTHO, np.zeros(3), "xu", True, True),
    "ortho_x": (ORTHO, np.zeros(3), "x", False, False),
    "tri_x_img": (TRI, np.array([-1.0, 2.0, 0.5]), "x+img", False, True),
    "tri_xs_img": (TRI, np.array([0.3, -0.2, 0.0]), "xs+img", True, True),
    "tri_xsu": (TRI, np.zeros(3), "xsu", False, True),
    "tri_x": (TRI, np.array([-1.0, 2.0, 0.5]), "x", False, False),
}


@pytest.mark.parametrize("case", list(DUMP_CASES))
def test_dump_round_trip(tmp_path, case):
    cell, origin, mode, element, exact = DUMP_CASES[case]
    u, v, f = crystal(cell, origin)
    dump = write_dump(
        tmp_path / f"{case}.dump", u, v, cell, origin, f=f, mode=mode, element=element
    )
    out = convert([dump], tmp_path / "ds", timestep_fs=TIMESTEP_FS, temperature_K=300, species="Al")
    (tr,) = open_trajectories(out)
    meta = read_index(out)
    expected = u
    if not exact:  # continuity unwrapping starts from the wrapped first frame
        expected = u - split(u[0], cell, origin)[1] @ cell
    # atoms really crossed the boundary between frames
    assert np.any(np.diff(split(u, cell, origin)[1], axis=0) != 0)
    np.testing.assert_allclose(tr.read("positions"), expected, atol=1e-8)
    np.testing.assert_allclose(tr.read("velocities"), np.broadcast_to(v, u.shape), atol=1e-5)
    np.testing.assert_allclose(tr.read("forces"), np.broadcast_to(f, u.shape), atol=1e-5)
    np.testing.assert_allclose(tr.read("cell"), np.broadcast_to(cell, (len(STEPS), 3, 3)))
    np.testing.assert_allclose(tr.time_fs, STEPS * TIMESTEP_FS)
    assert tr.frame_interval_fs == 20.0 and tr.temperature_K == 300.0
    assert np.all(tr.species == 13)
    np.testing.assert_allclose(tr.masses, 26.9815385, atol=1e-6)
    entry = meta["trajectories"][0]
    assert entry["file"] == f"T0300K_{case}.h5" and entry["frames"] == len(STEPS)
    assert entry["atoms"] == 256 and entry["test"] is False
    assert ("continuity" in entry["unwrapping"]) == (not exact)
    assert meta["sources"][0]["sha256"] == entry["source_sha256"]
    assert "metal" in meta["units"]
    assert not list(out.glob("*.partial"))


def test_dump_general_triclinic_gzip_time(tmp_path):
    """``BOX BOUNDS abc origin`` (rotated cell), gzip, times from ``ITEM: TIME`` (ps)."""
    angle = 0.3
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    cell, origin = TRI @ rot.T, np.array([0.5, -2.0, 1.0])
    u, v, _ = crystal(cell, origin, seed=7, temperature_K=450.0)
    dump = write_dump(tmp_path / "gen.dump.gz", u, v, cell, origin, general=True, time_ps=True)
    out = convert([dump], tmp_path / "ds", species=13, temperature_K=[450.0])
    (tr,) = open_trajectories(out)
    np.testing.assert_allclose(tr.read("positions"), u, atol=1e-8)
    np.testing.assert_allclose(tr.read("cell", 0), cell, atol=1e-12)
    np.testing.assert_allclose(tr.time_fs, STEPS * TIMESTEP_FS)
    entry = read_index(out)["trajectories"][0]
    assert entry["file"] == "T0450K_gen.h5" and "TIME" in entry["time_source"]


def test_ase_extxyz_and_traj(tmp_path):
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    cell = TRI
    u, v, f = crystal(cell, images=False, seed=3, temperature_K=500.0)
    u_img, v2, _ = crystal(ORTHO, images=True, seed=4)
    wrapped, unwrapped = [], []
    for k in range(len(u)):
        a = Atoms("Al256", positions=u[k], cell=cell, pbc=True)
        a.set_velocities(units.velocity_to_ase(v))
        a.wrap()
        a.info.update(time_fs=100.0 + 20.0 * k, temperature_K=500.0)
        a.calc = SinglePointCalculator(a, forces=f)
        wrapped.append(a)
        b = Atoms("Al256", positions=u_img[k], cell=ORTHO, pbc=True)
        b.set_velocities(units.velocity_to_ase(v2))
        unwrapped.append(b)
    ase.io.write(tmp_path / "hot.extxyz", wrapped)
    ase.io.write(tmp_path / "cold.traj", unwrapped)
    out = convert(
        [tmp_path / "hot.extxyz", tmp_path / "cold.traj"],
        tmp_path / "ds",
        timestep_fs=20.0,
        test_temperatures_K=[500.0],
        command_line="equignnmd convert hot.extxyz cold.traj",
    )
    hot, cold = open_trajectories(out)
    meta = read_index(out)
    # wrapped input: continuity from the (wrapped) first frame
    expected = u - split(u[0], cell, np.zeros(3))[1] @ cell
    assert np.any(np.diff(split(u, cell, np.zeros(3))[1], axis=0) != 0)
    np.testing.assert_allclose(hot.read("positions"), expected, atol=1e-8)
    np.testing.assert_allclose(hot.read("velocities"), np.broadcast_to(v, u.shape), atol=1e-4)
    np.testing.assert_allclose(hot.read("forces"), np.broadcast_to(f, u.shape), atol=1e-5)
    np.testing.assert_allclose(hot.time_fs, 100.0 + 20.0 * np.arange(len(u)))
    assert hot.temperature_K == 500.0 and hot.frame_interval_fs == 20.0
    # unwrapped input stays as it is
    np.testing.assert_allclose(cold.read("positions"), u_img, atol=1e-8)
    np.testing.assert_allclose(cold.read("velocities"), np.broadcast_to(v2, u.shape), atol=1e-4)
    np.testing.assert_allclose(cold.time_fs, 20.0 * np.arange(len(u)))
    assert not cold.has_forces
    masses = np.full(256, 26.9815385)
    v_thermal = v2 - v2.mean(axis=0)  # the kinetic temperature leaves out the COM motion
    t_kin = np.sum(masses[:, None] * v_thermal**2) * units.MVV2E / (3 * 255 * units.KB_EV_PER_K)
    assert cold.temperature_K == pytest.approx(t_kin, rel=1e-4)
    e_hot, e_cold = meta["trajectories"]
    assert e_hot["test"] is True and e_cold["test"] is False
    assert e_hot["temperature_source"] == "atoms.info['temperature_K']"
    assert "kinetic" in e_cold["temperature_source"]
    assert e_hot["file"] == "T0500K_hot.h5"
    assert meta["command_line"].startswith("equignnmd convert")
    assert meta["test_temperatures_K"] == [500.0]
    assert json.loads((out / "dataset.json").read_text())["format"] == meta["format"]


def test_cli_convert_maps_options(tmp_path, capsys):
    """``equignnmd convert``: every option reaches the dataset it writes."""
    from equignnmd.cli import main

    u, v, f = crystal(ORTHO, seed=9, temperature_K=450.0)
    dump = write_dump(tmp_path / "run.dump", u, v, ORTHO, f=f, mode="xu")
    out = tmp_path / "ds"
    args = ["convert", str(dump), "-o", str(out), "--timestep-fs", str(TIMESTEP_FS)]
    args += ["--temperature", "450", "--test-temperatures", "450", "--species", "Al"]
    assert main([*args, "--mass", "26.5"]) == 0
    assert f"dataset written to {out}" in capsys.readouterr().out
    (tr,) = open_trajectories(out)
    meta = read_index(out)
    assert tr.temperature_K == 450.0 and tr.n_atoms == 256 and tr.n_frames == len(STEPS)
    assert tr.frame_interval_fs == 10 * TIMESTEP_FS  # dump every 10 steps of 2 fs
    np.testing.assert_allclose(tr.time_fs, STEPS * TIMESTEP_FS)
    assert np.all(tr.species == 13) and np.all(tr.masses == 26.5)
    np.testing.assert_allclose(tr.read("positions"), u, atol=1e-8)
    entry = meta["trajectories"][0]
    assert entry["file"] == "T0450K_run.h5" and entry["atoms"] == 256 and entry["test"] is True
    assert meta["test_temperatures_K"] == [450.0]
    command = meta["command_line"]
    assert command.startswith("equignnmd convert ") and "--mass 26.5" in command
    # the element's own mass without --mass; a missing timestep is a clear error (exit 2)
    assert main([*args[:3], str(tmp_path / "ds2"), *args[4:]]) == 0
    np.testing.assert_allclose(open_trajectories(tmp_path / "ds2")[0].masses, 26.9815385)
    capsys.readouterr()
    assert main(["convert", str(dump), "-o", str(tmp_path / "ds3"), "--species", "Al"]) == 2
    err = capsys.readouterr().err
    assert "run.dump" in err and "timestep_fs" in err, err


# ---------------------------------------------------------------------------------- errors
def _dump(tmp_path, name="bad.dump", **kw):
    u, v, f = crystal(ORTHO, seed=5)
    for key in ("u", "v"):
        if key in kw:
            kw.pop(key)(u if key == "u" else v)
    return write_dump(tmp_path / name, u, v, ORTHO, mode=kw.pop("mode", "xu"), **kw)


ERRORS = {
    "no_velocities": (dict(velocities=False), {}, ["vx vy vz", "velocities"]),
    "nan_positions": (
        dict(u=lambda u: u.__setitem__((2, 5, 0), np.nan)),
        {},
        ["positions", "frame 2"],
    ),
    "non_increasing": (dict(steps=[0, 10, 20, 20, 30]), {}, ["TIMESTEP", "frame 3"]),
    "uneven": (dict(steps=[0, 10, 20, 35]), {}, ["TIMESTEP", "frame 3", "evenly"]),
    "atom_count": (dict(drop_atom_in_frame=2), {}, ["NUMBER OF ATOMS", "frame 2"]),
    "no_timestep": (dict(), dict(timestep_fs=None), ["timestep_fs"]),
    "no_species": (dict(), dict(species=None), ["type", "species"]),
    "interval": (dict(), dict(frame_interval_fs=30.0), ["frame_interval_fs"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_dump_errors(tmp_path, case):
    make, args, words = ERRORS[case]
    dump = _dump(tmp_path, name=f"{case}.dump", **make)
    kw = dict(timestep_fs=1.0, species="Al", temperature_K=300.0) | args
    with pytest.raises(ValueError) as err:
        convert([dump], tmp_path / "ds", **kw)
    msg = str(err.value)
    assert f"{case}.dump" in msg, msg
    for word in words:
        assert word in msg, msg
    assert not (tmp_path / "ds").exists()  # nothing half-written, no empty folder


def test_nan_velocities(tmp_path):
    u, v, _ = crystal(ORTHO, seed=5)
    path = write_dump(tmp_path / "nanv.dump", u, v, ORTHO, mode="xu")
    text = path.read_text().split("ITEM: TIMESTEP")
    head, atoms = text[2].split("ITEM: ATOMS ")
    cols = atoms.split("\n")[0].split()
    lines = atoms.split("\n")
    row = lines[4].split()
    row[cols.index("vy")] = "nan"
    lines[4] = " ".join(row)
    text[2] = head + "ITEM: ATOMS " + "\n".join(lines)
    path.write_text("ITEM: TIMESTEP".join(text))
    with pytest.raises(ValueError, match=r"nanv\.dump: frame 1 \(TIMESTEP 10\): field 'velocit"):
        convert([path], tmp_path / "ds", timestep_fs=1.0, species="Al")


def test_other_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.dump.*inputs"):
        convert([tmp_path / "nothere.dump"], tmp_path / "ds", timestep_fs=1.0)
    with pytest.raises(ValueError, match="species"):
        convert([_dump(tmp_path)], tmp_path / "ds", timestep_fs=1.0, species="Xx")
    # units other than metal
    path = _dump(tmp_path, name="real.dump")
    path.write_text("ITEM: UNITS\nreal\n" + path.read_text())
    with pytest.raises(ValueError, match=r"real\.dump.*'UNITS'"):
        convert([path], tmp_path / "ds", timestep_fs=1.0, species="Al")
    # truncated last frame
    path = _dump(tmp_path, name="cut.dump")
    path.write_text(path.read_text()[:-300])
    with pytest.raises(ValueError, match=r"cut\.dump: frame 5 .*'ITEM: ATOMS'.*truncated"):
        convert([path], tmp_path / "ds", timestep_fs=1.0, species="Al")
    # ASE file without velocities
    import ase.io
    from ase.build import bulk

    ase.io.write(tmp_path / "still.extxyz", [bulk("Al", cubic=True)] * 3)
    with pytest.raises(ValueError, match=r"still\.extxyz.*'velocities'"):
        convert([tmp_path / "still.extxyz"], tmp_path / "ds", timestep_fs=1.0)
    # neither dump nor ASE
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match=r"junk\.bin.*ASE"):
        convert([tmp_path / "junk.bin"], tmp_path / "ds", timestep_fs=1.0)
    assert not (tmp_path / "ds" / "dataset.json").exists()


def _cut(path: Path, frame: int, keep_lines: int) -> Path:
    """Cut a dump ``keep_lines`` lines into frame ``frame``'s header (1: right after its
    'ITEM: TIMESTEP' line)."""
    text = path.read_text()
    start = [i for i in range(len(text)) if text.startswith("ITEM: TIMESTEP", i)][frame]
    lines = text[start:].split("\n")
    path.write_text(text[:start] + "\n".join(lines[:keep_lines]) + "\n")
    return path


@pytest.mark.parametrize(
    "keep, words",
    [
        (1, ["frame 3:", "ends right after 'ITEM: TIMESTEP'", "expected the step number"]),
        (2, ["frame 3 (TIMESTEP 30)", "ends after 'ITEM: TIMESTEP'", "expected the rest"]),
        (4, ["frame 3 (TIMESTEP 30)", "ends after 'ITEM: NUMBER OF ATOMS'", "BOX BOUNDS"]),
    ],
)
def test_dump_cut_inside_a_header(tmp_path, keep, words):
    path = _cut(_dump(tmp_path, name="cut.dump"), 3, keep)
    with pytest.raises(ValueError) as err:
        convert([path], tmp_path / "a" / "ds", timestep_fs=1.0, species="Al")
    msg = str(err.value)
    assert msg.startswith(f"LAMMPS dump {path}: frame 3"), msg
    for word in words + ["truncated", "last complete frame: frame 2 (TIMESTEP 20)"]:
        assert word in msg, msg
    assert "invalid literal" not in msg
    assert not (tmp_path / "a").exists()  # neither the dataset folder nor its parent


def test_dump_timestep_not_a_number(tmp_path):
    path = _dump(tmp_path, name="step.dump")
    path.write_text(path.read_text().replace("ITEM: TIMESTEP\n20\n", "ITEM: TIMESTEP\n2O\n"))
    with pytest.raises(ValueError) as err:
        convert([path], tmp_path / "ds", timestep_fs=1.0, species="Al")
    msg = str(err.value)
    assert f"{path}: frame 2: section 'ITEM: TIMESTEP' holds '2O'" in msg
    assert "expected the step number (an integer)" in msg and "invalid literal" not in msg


def test_failed_convert_keeps_an_existing_folder_and_its_files(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    path = _cut(_dump(tmp_path), 2, 1)
    with pytest.raises(FileExistsError, match="notes.txt"):  # not empty: refused first
        convert([path], out, timestep_fs=1.0, species="Al")
    with pytest.raises(ValueError, match="truncated"):
        convert([path], out, timestep_fs=1.0, species="Al", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_temperature_label_off_is_warned_then_refused(tmp_path, capsys):
    """The crystal is at 300 K exactly. A label 10 % off is a warning, kept in dataset.json;
    within 5 % it is silent; 25 % off is refused (nothing written) unless
    allow_temperature_mismatch, which keeps the label with the warning."""
    from equignnmd.cli import main

    path = _dump(tmp_path, name="hot.dump")
    kw = dict(timestep_fs=1.0, species="Al")
    with pytest.warns(UserWarning, match=r"hot\.dump: temperature label 330 K") as caught:
        out = convert([path], tmp_path / "ds", temperature_K=330, **kw)
    (message,) = [str(w.message) for w in caught if "temperature label" in str(w.message)]
    entry = read_index(out)["trajectories"][0]
    measured = entry["mean_kinetic_temperature_K"]
    assert measured == pytest.approx(300.0)
    assert "mean kinetic temperature 300.0 K by +10 %" in message
    assert "expected them within 5 %" in message
    assert entry["temperature_warning"] == message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within 5 %: silent
        out2 = convert([path], tmp_path / "ds2", temperature_K=measured * 1.04, **kw)
    assert "temperature_warning" not in read_index(out2)["trajectories"][0]

    with pytest.raises(ValueError) as err:  # 25 % off: refused before anything is written
        convert([path], tmp_path / "ds3", temperature_K=375, **kw)
    msg = str(err.value)
    for word in ("hot.dump", "label 375 K", "temperature 300.0 K", "+25 %", "within 20 %"):
        assert word in msg, msg
    assert "--allow-temperature-mismatch" in msg and "allow_temperature_mismatch" in msg
    assert not (tmp_path / "ds3").exists()
    with pytest.warns(UserWarning, match=r"label 375 K.*kept by allow_temperature_mismatch"):
        out4 = convert(
            [path], tmp_path / "ds4", temperature_K=375, allow_temperature_mismatch=True, **kw
        )
    (tr,) = open_trajectories(out4)
    assert tr.temperature_K == 375.0
    assert "+25 %" in read_index(out4)["trajectories"][0]["temperature_warning"]

    args = ["convert", str(path), "--timestep-fs", "1", "--species", "Al"]
    assert main([*args, "-o", str(tmp_path / "c1"), "--temperature", "330"]) == 0
    err = capsys.readouterr().err
    assert "equignnmd convert: warning: LAMMPS dump" in err and "temperature label 330 K" in err
    assert main([*args, "-o", str(tmp_path / "c2"), "--temperature", "375"]) == 2
    err = capsys.readouterr().err
    assert "hot.dump" in err and "--allow-temperature-mismatch" in err, err
    assert not (tmp_path / "c2").exists()
    more = ["--temperature", "375", "--allow-temperature-mismatch"]
    assert main([*args, "-o", str(tmp_path / "c3"), *more]) == 0
    assert "kept by allow_temperature_mismatch" in capsys.readouterr().err


# ----------------------------------------------------------------------------- velocity units
def _fast_dump(tmp_path, name, scale=1.0):
    """A 300 K dump with frames 5 fs apart (TIMESTEP 0, 5, ... with timestep_fs=1: close
    enough for the velocity check) whose velocities are written × ``scale`` (1/1000: the Å/ps
    velocities written in Å/fs, as LAMMPS 'units real' would)."""
    u, v, f = crystal(ORTHO, seed=11, frame_fs=5.0)
    return write_dump(tmp_path / name, u, v * scale, ORTHO, f=f, steps=np.arange(6) * 5)


def test_velocities_matching_the_motion_pass(tmp_path):
    out = convert([_fast_dump(tmp_path, "ok.dump")], tmp_path / "ds", timestep_fs=1.0, species=13)
    entry = read_index(out)["trajectories"][0]
    assert entry["velocity_factor"] == pytest.approx(1.0, abs=1e-6)
    assert entry["velocity_check"].startswith("passed: Δr/Δt ≈ 1 × the velocities")
    assert "5 frame pairs 5 fs apart" in entry["velocity_check"]
    assert entry["temperature_K"] == pytest.approx(300.0)
    # frames 20 fs apart cannot be checked: said in dataset.json, not an error
    u, v, _ = crystal(ORTHO, seed=11)
    far = write_dump(tmp_path / "far.dump", u, v / 1000, ORTHO, mode="xu")
    entry = read_index(convert([far], tmp_path / "ds2", timestep_fs=2.0, species=13))
    entry = entry["trajectories"][0]
    assert entry["velocity_factor"] is None
    assert entry["velocity_check"].startswith("not possible: frames are 20 fs apart")


@pytest.mark.parametrize(
    "scale, factor, unit",
    [
        (1e-3, "1000", "Å/fs (LAMMPS 'units real')"),
        (0.1, "10", "nm/ps"),
        (100.0, "0.01", "m/s"),
        (units.ASE_VELOCITY_PER_A_PS, "98.23", "ASE units"),
        (-1.0, "-1", "No common velocity unit"),
    ],
)
def test_velocities_in_other_units_are_refused(tmp_path, scale, factor, unit):
    path = _fast_dump(tmp_path, "vel.dump", scale=scale)
    out = tmp_path / "a" / "ds"
    with pytest.raises(ValueError) as err:
        convert([path], out, timestep_fs=1.0, species="Al")
    msg = str(err.value)
    assert msg.startswith(f"LAMMPS dump {path}: field 'velocities' disagrees"), msg
    for word in (f"≈ {factor} × the velocities", unit, "--skip-velocity-check"):
        assert word in msg, msg
    assert not (tmp_path / "a").exists()  # refused before anything was written


def test_velocity_check_override_and_cli(tmp_path, capsys):
    """Å/fs velocities: refused by the CLI (exit 2, nothing written), converted with
    --skip-velocity-check (the factor noted in dataset.json); a good first input is not
    left behind when the second is refused."""
    from equignnmd.cli import main

    good, bad = _fast_dump(tmp_path, "good.dump"), _fast_dump(tmp_path, "real.dump", 1e-3)
    with pytest.raises(ValueError, match=r"real\.dump: field 'velocities'.*Å/fs"):
        convert([good, bad], tmp_path / "ds", timestep_fs=1.0, species="Al")
    assert not (tmp_path / "ds").exists()
    args = ["convert", str(bad), "--timestep-fs", "1", "--species", "Al"]
    assert main([*args, "-o", str(tmp_path / "c1")]) == 2
    err = capsys.readouterr().err
    assert "real.dump" in err and "Å/fs" in err and "--skip-velocity-check" in err, err
    assert not (tmp_path / "c1").exists()
    assert main([*args, "-o", str(tmp_path / "c2"), "--skip-velocity-check"]) == 0
    entry = read_index(tmp_path / "c2")["trajectories"][0]
    assert entry["velocity_factor"] == pytest.approx(1000.0, rel=1e-6)
    assert entry["velocity_check"].startswith("not enforced (check_velocities=False); failed")
    out = convert([bad], tmp_path / "ds3", timestep_fs=1.0, species="Al", check_velocities=False)
    (tr,) = open_trajectories(out)
    assert tr.temperature_K == pytest.approx(300e-6)  # the kinetic temperature of Å/fs numbers


def test_ase_velocities_in_A_per_ps_are_refused(tmp_path):
    """An ASE file whose 'velocities' were set in Å/ps, not ASE units (Å per 10.18 fs)."""
    import ase.io
    from ase import Atoms

    u, v, _ = crystal(ORTHO, seed=12, frame_fs=2.0)
    frames = []
    for k in range(len(u)):
        a = Atoms("Al256", positions=u[k], cell=ORTHO, pbc=True)
        a.set_velocities(v)  # should have been units.velocity_to_ase(v)
        a.info["time_fs"] = 2.0 * k
        frames.append(a)
    ase.io.write(tmp_path / "md.extxyz", frames)
    with pytest.raises(ValueError) as err:
        convert([tmp_path / "md.extxyz"], tmp_path / "ds")
    msg = str(err.value)
    assert "md.extxyz: field 'velocities'" in msg and "≈ 0.01018 × the velocities" in msg
    assert "Å/ps written as ASE velocities" in msg, msg
    assert not (tmp_path / "ds").exists()


# ------------------------------------------------------------------------- real LAMMPS dump
def test_real_lammps_dump(tmp_path):
    try:
        from equignnmd._lammps import default_potential, new_lammps

        lmp = new_lammps()
    except ImportError as err:  # pragma: no cover - depends on the install
        pytest.skip(f"LAMMPS not available: {err}")
    dump = tmp_path / "al.dump"
    for cmd in (
        "units metal",
        "atom_style atomic",
        "lattice fcc 4.05",
        "region box block 0 4 0 4 0 4",
        "create_box 1 box",
        "create_atoms 1 box",
        "mass 1 26.9815",
        "pair_style eam/fs",
        f"pair_coeff * * {default_potential()} Al",
        "neighbor 1.0 bin",
        "neigh_modify every 1 delay 0 check no",  # re-wrap every step: image flags change
        "velocity all create 600 4928459 mom yes rot yes",
        "fix nve all nve",
        f"dump d all custom 5 {dump} id type xu yu zu vx vy vz fx fy fz",
        "dump_modify d sort id format float %20.15g",
        "run 20",
        "undump d",
    ):
        lmp.command(cmd)
    x = np.array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3)
    image = np.array(lmp.gather_atoms("image", 0, 3)).reshape(-1, 3)
    v = np.array(lmp.gather_atoms("v", 1, 3)).reshape(-1, 3)
    lmp.close()
    cell = np.diag([L, L, L])
    out = convert([dump], tmp_path / "ds", timestep_fs=1.0, species="Al", masses_amu=26.9815)
    (tr,) = open_trajectories(out)
    assert tr.n_frames == 5 and tr.frame_interval_fs == 5.0 and tr.n_atoms == 256
    np.testing.assert_allclose(tr.time_fs, [0, 5, 10, 15, 20])
    np.testing.assert_allclose(tr.read("positions", -1), x + image @ cell, atol=1e-9)
    np.testing.assert_allclose(tr.read("velocities", -1), v, rtol=1e-6, atol=1e-6)
    assert tr.has_forces and np.all(tr.masses == 26.9815)
    # unwrapped: consecutive frames move by ~v dt, never by a box length
    step = np.diff(tr.read("positions"), axis=0)
    assert np.abs(step).max() < 0.5
    temps = tr.thermo("temperature_K")
    assert temps[0] == pytest.approx(600.0, rel=1e-6)  # 'velocity create 600': same 3N-3 dof
    assert tr.temperature_K == pytest.approx(np.mean(temps))
    # real dynamics, frames 5 fs apart: Δr/Δt follows the mean velocity of the two frames
    entry = read_index(out)["trajectories"][0]
    assert entry["velocity_factor"] == pytest.approx(1.0, abs=0.01)
    # the same dump with its velocities in Å/fs (as 'units real' writes them) is refused
    text = dump.read_text().split("\n")
    atoms = np.array([len(line.split()) == 11 for line in text])  # id type xu.. vx.. fx..
    rows = np.loadtxt(np.array(text)[atoms])
    rows[:, 5:8] /= 1000
    lines, buf = np.array(text, dtype=object), io.StringIO()
    np.savetxt(buf, rows, fmt="%.15g")
    lines[atoms] = buf.getvalue().splitlines()
    real = tmp_path / "al_real.dump"
    real.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"al_real\.dump: field 'velocities'.*Å/fs"):
        convert([real], tmp_path / "ds2", timestep_fs=1.0, species="Al")
    assert not (tmp_path / "ds2").exists()
