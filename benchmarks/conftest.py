"""Benchmark suite configuration: run modes, the session-wide result collector, the report.

``pytest benchmarks/`` (default: about 11 minutes on a 2-core CPU), ``--full`` or
``EQUIGNNMD_BENCH_FULL=1`` (paper-scale sizes up to 32 000 atoms; long), ``--smoke`` or
``EQUIGNNMD_BENCH_SMOKE=1`` (under a minute). Every test adds rows to one collector; at the end
of the session ``benchmarks/results/latest.json`` and ``latest.md`` are written (smoke and full
runs write ``latest-smoke.*`` / ``latest-full.*``) and the markdown tables printed.
"""

from __future__ import annotations

import os
import sys

# OpenMP threads that spin while waiting make every multi-threaded kernel (torch's and
# LAMMPS's) 10-100x slower as soon as another process competes for the cores (measured on a
# shared 2-core machine). Passive waiting costs little on an idle machine, so the suite uses it
# unless the caller chose a policy; libgomp reads it once, when it is loaded (with torch).
OMP_POLICY_SET_BY_SUITE = "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules
if OMP_POLICY_SET_BY_SUITE:
    os.environ["OMP_WAIT_POLICY"] = "passive"

import pytest  # noqa: E402
import torch  # noqa: E402
from _engine import Engine  # noqa: E402
from _machine import machine_info  # noqa: E402
from _plan import (  # noqa: E402
    ENV_FULL,
    ENV_SMOKE,
    command_line,
    lammps_cases,
    make_plan,
    own_reference_cases,
    replica_cases,
    scaling_cases,
    throughput_cases,
)
from _report import Results  # noqa: E402

PLAN_KEY = pytest.StashKey()
RESULTS_KEY = pytest.StashKey()
ENGINE_KEY = pytest.StashKey()
THREADS_KEY = pytest.StashKey()

CASE_LISTS = {
    "throughput_case": throughput_cases,
    "replica_case": replica_cases,
    "scaling_case": scaling_cases,
    "lammps_case": lammps_cases,
    "own_reference_case": own_reference_cases,
}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def pytest_addoption(parser):
    group = parser.getgroup("equignnmd benchmarks")
    group.addoption(
        "--full",
        action="store_true",
        default=False,
        help=f"paper-scale benchmark sizes (up to 32 000 atoms; long); also {ENV_FULL}=1",
    )
    group.addoption(
        "--smoke",
        action="store_true",
        default=False,
        help=f"benchmark smoke subset (under a minute); also {ENV_SMOKE}=1",
    )


def pytest_configure(config):
    full = config.getoption("--full", default=False) or _flag(ENV_FULL)
    smoke = config.getoption("--smoke", default=False) or _flag(ENV_SMOKE)
    if full and smoke:
        raise pytest.UsageError("choose one of --full and --smoke")
    plan = make_plan("full" if full else "smoke" if smoke else "default")
    config.stash[PLAN_KEY] = plan
    threads = torch.get_num_threads()
    config.stash[THREADS_KEY] = threads
    machine = machine_info()
    machine["omp_wait_policy_set_by_suite"] = OMP_POLICY_SET_BY_SUITE
    config.stash[RESULTS_KEY] = Results(plan, machine, command_line())
    torch.set_num_threads(threads)  # machine_info() started LAMMPS, which may reset it
    config.stash[ENGINE_KEY] = Engine(plan)
    config.addinivalue_line("markers", "training: DDP training throughput (subprocesses)")
    config.addinivalue_line("markers", "accuracy: trains a small model and evaluates it")
    config.addinivalue_line("markers", "fidelity: trajectories against LAMMPS (equignnmd fidelity)")


def pytest_collection_modifyitems(config, items):
    """Parts a mode leaves out are skipped before their (costly) fixtures are set up."""
    plan = config.stash[PLAN_KEY]
    for item in items:
        for part in ("training", "accuracy"):
            if item.get_closest_marker(part) and not getattr(plan, part):
                item.add_marker(pytest.mark.skip(reason=f"{part} is not part of {plan.mode} mode"))


def pytest_generate_tests(metafunc):
    plan = metafunc.config.stash[PLAN_KEY]
    for name, make in CASE_LISTS.items():
        if name in metafunc.fixturenames:
            cases = make(plan)
            metafunc.parametrize(name, cases, ids=[c.id for c in cases])


@pytest.fixture(scope="session")
def plan(pytestconfig):
    return pytestconfig.stash[PLAN_KEY]


@pytest.fixture(scope="session")
def results(pytestconfig):
    return pytestconfig.stash[RESULTS_KEY]


@pytest.fixture(scope="session")
def engine(pytestconfig):
    return pytestconfig.stash[ENGINE_KEY]


@pytest.fixture(autouse=True)
def _torch_threads(pytestconfig):
    """Every test starts with the session's torch thread count: creating a LAMMPS instance
    in-process (without OMP_NUM_THREADS) sets the shared OpenMP runtime to 1 thread."""
    want = pytestconfig.stash[THREADS_KEY]
    if torch.get_num_threads() != want:
        pytestconfig.stash[RESULTS_KEY].header_note(
            f"Starting LAMMPS in-process (without OMP_NUM_THREADS) left torch with "
            f"{torch.get_num_threads()} thread(s); the suite restores {want} before every test."
        )
        torch.set_num_threads(want)
    yield


@pytest.fixture(scope="session")
def bench_dataset(plan, tmp_path_factory):
    """A small real LAMMPS EAM dataset (256 atoms; train/val at 300 K, 350 K held out)."""
    from equignnmd.config import load_config
    from equignnmd.data.generate import GenerateConfig, generate

    out = tmp_path_factory.mktemp("bench_data") / "al256"
    overrides = {"output": str(out), "cells": 4, "record_every_fs": 1.0, "seed": 7}
    overrides.update(plan.dataset)
    cfg = load_config(GenerateConfig, overrides=overrides)
    return generate(cfg, progress=False)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if RESULTS_KEY not in config.stash or config.option.collectonly:
        return
    results: Results = config.stash[RESULTS_KEY]
    if results.empty:
        return
    results.finalize()
    js, md = results.write()
    text = results.to_markdown()
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "equignnmd benchmark tables")
        for line in text.splitlines():
            reporter.write_line(line)
        reporter.write_line(f"written: {md} and {js}")
    else:
        print(text)
        print(f"written: {md} and {js}")
