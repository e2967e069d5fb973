"""``flair-elmo train`` under ``torchrun``: 2 processes with gloo on this CPU, against 1 process.

Each run is a real ``torchrun --standalone`` job (loopback only). With the same global batch, two
processes must reach the parameters one process reaches (their gradients are the same sums, added
in another order); a process killed mid-run must stop the job with a clear error, and a rerun must
resume from the last checkpoint to the parameters of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from flair_elmo_modes.bilm import load_bilm
from tests.helpers import assert_as_accurate, float64_tolerance
from tests.training.conftest import write_corpus

pytestmark = pytest.mark.slow

FLOAT64_CLI = Path(__file__).with_name("train_float64.py")
TINY = (
    "--char-dim", "4", "--filters", "1:4,2:8", "--cell-dim", "16", "--projection-dim", "8",
    "--no-progress", "--threads", "1", "--dropout", "0", "--batch-size", "16", "--cutoffs", "8",
)  # fmt: skip


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Three shards of the test corpus, as a quoted glob would name them."""
    directory = tmp_path_factory.mktemp("shards")
    for k in range(3):
        write_corpus(directory / f"train-{k}.txt", 100, seed=10 + k)
    return str(directory / "train-*.txt")


def command(processes: int, *args: str, float64: bool = False) -> list[str]:
    """The command line of a training run on ``processes`` processes (a plain process for 1)."""
    program = [str(FLOAT64_CLI)] if float64 else ["-m", "flair_elmo_modes", "train"]
    if processes == 1:
        return [sys.executable, *program, *args]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return [*torchrun, *program, *args]


def train(processes: int, *args: str, float64: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(processes, *args, float64=float64), capture_output=True, text=True, timeout=300, env=_env()
    )


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def parameters(output: Path) -> dict[str, torch.Tensor]:
    return torch.load(output / "checkpoint.pt", weights_only=True)["model"]


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[name].double() - b[name].double()).abs().max()) for name in a)


def test_two_processes_reach_the_parameters_of_one(shards: str, tmp_path: Path) -> None:
    outputs, runs = {}, {}
    for float64 in (False, True):  # the float64 run starts from the float32 run's parameters
        for processes in (1, 2):
            output = tmp_path / f"p{processes}-{'float64' if float64 else 'float32'}"
            done = train(processes, shards, "--output", str(output), "--max-steps", "8", *TINY, float64=float64)
            assert done.returncode == 0, done.stderr[-3000:]
            result = json.loads((output / "result.json").read_text(encoding="utf-8"))
            assert result["world_size"] == processes and result["steps"] == 8 and result["shards"] == 3
            outputs[processes, float64], runs[processes, float64] = output, parameters(output)
            assert next(iter(runs[processes, float64].values())).dtype == (torch.float64 if float64 else torch.float32)
    names = list(runs[1, False])
    assert all(list(run) == names for run in runs.values())
    one, two, exact = ([runs[key][name] for name in names] for key in ((1, False), (2, False), (1, True)))
    # The same gradients, added in another order: in float32 the two-process run is as accurate as
    # the one-process run, both against the float64 run from the same start; in float64 the two
    # runs differ by float64 rounding, float64_tolerance (from the float32 run's error).
    assert_as_accurate(two, one, exact)
    assert largest_difference(runs[1, True], runs[2, True]) <= float64_tolerance(one, exact)
    for float64 in (False, True):
        # The 8 steps did move the weights far more than rounding: Adam moves each by about its
        # learning rate (1e-3) a step; 1e-4 is hundreds of float32 roundings of these weights (up to 4).
        one_step = tmp_path / f"p1-one-step-{'float64' if float64 else 'float32'}"
        first = train(1, shards, "--output", str(one_step), "--max-steps", "1", *TINY, float64=float64)
        assert first.returncode == 0
        assert largest_difference(runs[1, float64], parameters(one_step)) > 1e-4
        # the export of the 2-process run is an ELMo model
        model = outputs[2, float64] / "model"
        assert load_bilm(model / "options.json", model / "weights.hdf5").options.cell_dim == 16


def rank_pid(torchrun: subprocess.Popen[str], rank: int) -> int | None:
    """The pid of the worker of ``rank`` (a child of the torchrun process with ``RANK=<rank>``)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environment = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == torchrun.pid and f"RANK={rank}".encode() in environment:
            return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through /proc")
def test_a_killed_process_stops_the_job_and_a_rerun_resumes_to_the_same_parameters(shards: str, tmp_path: Path) -> None:
    args = (shards, "--max-steps", "150", "--checkpoint-every", "10", "--epochs", "20", *TINY)
    uninterrupted = tmp_path / "uninterrupted"
    done = train(2, *args, "--output", str(uninterrupted))
    assert done.returncode == 0, done.stderr[-3000:]

    output = tmp_path / "killed"
    job = subprocess.Popen(
        command(2, *args, "--output", str(output)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (output / "checkpoint.pt").is_file() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.05)
        victim = rank_pid(job, 1)
        assert victim is not None and job.poll() is None, "the job ended before a process could be killed"
        os.kill(victim, signal.SIGKILL)
        _, stderr = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    assert job.returncode != 0
    assert "another process of the run failed" in stderr or "Signal 9 (SIGKILL)" in stderr, stderr[-3000:]
    checkpoint = torch.load(output / "checkpoint.pt", weights_only=True)
    stopped_at = checkpoint["progress"]["step"]
    assert 0 < stopped_at < 150 and not (output / "result.json").exists()

    resumed = train(2, *args, "--output", str(output))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"step {stopped_at}" in resumed.stderr  # "resumed from ... at epoch E, step N"
    assert largest_difference(parameters(output), parameters(uninterrupted)) == 0.0


def test_resuming_with_another_number_of_processes_is_refused(shards: str, tmp_path: Path) -> None:
    output = tmp_path / "run"
    assert train(2, shards, "--output", str(output), "--max-steps", "2", *TINY).returncode == 0
    again = train(1, shards, "--output", str(output), "--max-steps", "4", *TINY)
    assert again.returncode == 2
    assert "was made by 2 process(es), this run has 1: resume with torchrun --nproc_per_node 2" in again.stderr
