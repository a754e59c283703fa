"""One device rule (``equignnmd.device.pick_device``) for the trainer, evaluation and the CLI."""

from __future__ import annotations

import pytest
import torch

from equignnmd.device import pick_device


@pytest.mark.parametrize("name", ["auto", None])
def test_auto_is_cuda_when_present_else_cpu(name):
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device(name) == torch.device(want)


def test_a_named_device_is_taken_as_given():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    assert pick_device("cuda:1") == torch.device("cuda", 1)  # named, not checked for presence


def test_a_bad_name_is_an_error():
    with pytest.raises(RuntimeError):
        pick_device("gpu0")


def test_the_trainer_uses_it():
    import equignnmd.train

    assert equignnmd.train.pick_device is pick_device
