"""The command line as a new user meets it: help text and defaults for every option, clear
answers to bad arguments, and the environment defaults of the entry point."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from equignnmd._environment import OMP_DEFAULTS
from equignnmd.checkpoint import pretrained_names
from equignnmd.cli import SPEED_EPILOG, build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


def _options(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def test_every_option_of_every_subcommand_has_help_and_shows_its_default():
    parser = build_parser()
    subs = _subparsers(parser)
    assert {"generate", "convert", "baselines", "train", "rollout", "evaluate"} <= set(subs)
    checked = 0
    for name, sub in subs.items():
        text = "".join(sub.format_help().split())  # argparse wraps lines (also at hyphens)
        for action in _options(sub):
            where = f"equignnmd {name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and action.help.strip(), f"{where}: no help text"
            if not action.option_strings or action.nargs == 0:
                continue  # positionals are required; flags are off unless given
            if action.required:
                assert "(required)" in action.help, f"{where}: help does not say it is required"
            elif action.default is None:  # says what happens without it (or that one of a
                # required group is needed)
                assert "default" in action.help or "required" in action.help, where
            else:
                shown = f"(default: {action.default})"
                assert "".join(shown.split()) in text, f"{where}: help does not show {shown}"
            checked += 1
    assert checked > 60


def test_checkpoint_help_lists_the_shipped_names():
    names = pretrained_names()
    assert {"equivariant-al", "paper-al"} <= set(names)
    subs = _subparsers(build_parser())
    for command in ("rollout", "evaluate", "fidelity"):
        action = next(a for a in subs[command]._actions if a.dest == "checkpoint")
        for name in names:
            assert f"pretrained:{name}" in action.help, (command, name)


def test_rollout_help_documents_the_speed_definition():
    text = " ".join(_subparsers(build_parser())["rollout"].format_help().split())
    assert " ".join(SPEED_EPILOG.split()) in text
    assert "steps/s × stride" in text and "setup" in text


def test_unknown_arch_lists_the_architectures(capsys, tmp_path):
    from equignnmd.models import REGISTRY

    assert main(["train", "--arch", "nonsense", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "argument --arch: 'nonsense' is not an architecture" in err
    assert all(name in err for name in REGISTRY)
    assert ".yaml" not in err and "config" not in err  # not a list of config files
    assert not (tmp_path / "run").exists()


def test_arch_help_names_every_registered_architecture():
    from equignnmd.models import REGISTRY

    action = next(a for a in _subparsers(build_parser())["train"]._actions if a.dest == "arch")
    assert all(name in action.help for name in REGISTRY)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["baselines", "--data", "d", "--dt", "-5"], "argument --dt: stride '-5' is not"),
        (["baselines", "--data", "d", "--dt", "5,x"], "argument --dt: stride 'x' is not"),
        (["train", "--arch", "paper", "--strides", "0"], "argument --strides: stride '0'"),
        (["generate", "--temperatures", "300,-1"], "argument --temperatures: temperature '-1'"),
    ],
)
def test_bad_number_lists_say_what_is_expected(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "each > 0, comma-separated" in err
    assert "invalid" not in err and "_floats" not in err


def _child_env(**values) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OMP_DEFAULTS}
    env.update(values)
    return env


CHILD = """
import os, sys
before = os.environ.get("OMP_WAIT_POLICY")
from equignnmd import cli
torch_first = "torch" in sys.modules
code = cli.main(["rollout", "--checkpoint", "missing.pt", "--structure", "x.extxyz",
                 "--dt", "5", "--steps", "1", "--no-progress"])
print(before, os.environ.get("OMP_WAIT_POLICY"), torch_first, "torch" in sys.modules, code)
"""


@pytest.mark.slow
@pytest.mark.parametrize("user_value", [None, "active", "PASSIVE"])
def test_entry_point_sets_omp_wait_policy_before_torch(tmp_path, user_value):
    env = _child_env() if user_value is None else _child_env(OMP_WAIT_POLICY=user_value)
    run = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    before, after, torch_first, torch_after, code = run.stdout.split()
    assert torch_first == "False" and torch_after == "True"  # torch came after the setting
    assert code == "2" and "missing.pt" in run.stderr
    if user_value is None:
        assert before == "None" and after == "passive"
    else:
        assert before == after == user_value  # the user's choice is left alone


def test_console_script_and_python_m_set_it(tmp_path):
    """The installed ``equignnmd`` script and ``python -m equignnmd`` both go through main():
    a sitecustomize on PYTHONPATH reports the variable as the process exits."""
    (tmp_path / "sitecustomize.py").write_text(
        "import atexit, os, sys\n"
        "before = os.environ.get('OMP_WAIT_POLICY')\n"
        "atexit.register(lambda: sys.stderr.write(\n"
        "    f\"OMP {before} {os.environ.get('OMP_WAIT_POLICY')}\\n\"))\n"
    )
    env = _child_env(PYTHONPATH=str(tmp_path))
    script = Path(sys.executable).with_name("equignnmd")
    for argv in ([str(script), "--version"], [sys.executable, "-m", "equignnmd", "--version"]):
        run = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=tmp_path)
        assert run.returncode == 0 and run.stdout.startswith("equignnmd "), run.stderr
        assert "OMP None passive" in run.stderr, (argv, run.stderr)
