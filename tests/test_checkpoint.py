"""Unreadable checkpoints get our own message: the file, that it is not a readable equignnmd
checkpoint, and what was expected; never torch's advice to turn safe loading off."""

from __future__ import annotations

import os

import pytest

from equignnmd.checkpoint import pretrained_names, read_checkpoint, resolve_path
from equignnmd.cli import main

SHIPPED = ("equivariant-al", "paper-al")


def _assert_our_message(text: str, path) -> None:
    assert str(path) in text
    assert "expected a checkpoint file written by `equignnmd train`" in text
    for name in SHIPPED:
        assert name in text
    assert "weights_only" not in text and "file an issue" not in text.lower()


def test_pretrained_names_are_read_from_the_package():
    assert set(SHIPPED) <= set(pretrained_names())
    assert pretrained_names() == sorted(pretrained_names())


def test_random_bytes(tmp_path):
    path = tmp_path / "random.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError) as err:
        read_checkpoint(path)
    text = str(err.value)
    assert "not a readable equignnmd checkpoint" in text and "not a torch zip archive" in text
    _assert_our_message(text, path)
    assert err.value.__cause__ is None and err.value.__suppress_context__


@pytest.mark.parametrize("fraction", [0.5, 0.01])
def test_truncated_copy_of_a_shipped_checkpoint(tmp_path, fraction):
    data = resolve_path("pretrained:equivariant-al").read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ValueError) as err:
        read_checkpoint(path)
    text = str(err.value)
    assert "not a readable equignnmd checkpoint" in text and "cut short" in text
    assert "Errno" not in text
    _assert_our_message(text, path)


def test_empty_file_and_folder(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="the file is empty") as err:
        read_checkpoint(empty)
    _assert_our_message(str(err.value), empty)
    with pytest.raises(ValueError, match="is a folder") as err:
        read_checkpoint(tmp_path)
    _assert_our_message(str(err.value), tmp_path)


def test_a_torch_file_that_is_not_an_equignnmd_checkpoint(tmp_path):
    import torch

    path = tmp_path / "tensor.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="field 'format' is None") as err:
        read_checkpoint(path)
    _assert_our_message(str(err.value), path)


def test_missing_file_and_unknown_pretrained_name(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        read_checkpoint(missing)
    _assert_our_message(str(err.value), missing)
    with pytest.raises(FileNotFoundError) as err:
        read_checkpoint("pretrained:copper")
    text = str(err.value)
    assert "'pretrained:copper'" in text and "no shipped pretrained model named 'copper'" in text
    assert all(name in text for name in SHIPPED)


def test_cli_reports_an_unreadable_checkpoint_before_writing(tmp_path, capsys):
    path = tmp_path / "random.pt"
    path.write_bytes(os.urandom(1000))
    out = tmp_path / "ro"
    code = main(
        ["rollout", "--checkpoint", str(path), "--structure", str(path), "--dt", "5"]
        + ["--steps", "2", "--out", str(out), "--no-progress"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "equignnmd rollout: error: checkpoint" in err and "weights_only" not in err
    assert not out.exists()
