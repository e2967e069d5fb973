"""``flair-elmo train`` (cli/train.py): delegation to the training module, write errors, out of memory, logs."""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from flair_elmo_modes.cli import train
from tests.cli.helpers import (
    REPO,
    TINY_TRAIN,
    assert_one_line_error,
    limit_file_size,
    run,
    snapshot,
    write_training_text,
)
from tests.helpers import full_disk

# --------------------------------------------------------------------------------------------
# train


@pytest.fixture
def fake_training(monkeypatch: pytest.MonkeyPatch) -> list[argparse.Namespace]:
    calls: list[argparse.Namespace] = []
    module = types.ModuleType(train.TRAIN_MODULE)
    module.__doc__ = "Train an ELMo biLM."

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("corpus")
        parser.add_argument("--epochs", type=int, default=1)

    def run_training(args: argparse.Namespace) -> int:
        calls.append(args)
        return 0

    module.add_arguments = add_arguments  # type: ignore[attr-defined]
    module.run = run_training  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, train.TRAIN_MODULE, module)
    return calls


def test_train_delegates_to_the_training_module(
    fake_training: list[argparse.Namespace], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "train", "corpus.txt", "--epochs", "3")[0] == 0
    assert (fake_training[0].corpus, fake_training[0].epochs) == ("corpus.txt", 3)
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "usage: flair-elmo train" in out and "--epochs" in out


def test_train_without_the_training_module(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, train.TRAIN_MODULE, None)  # makes the import fail
    code, out, err = run(capsys, "train", "corpus.txt")
    assert code == 1 and out == ""
    assert_one_line_error(err, "the train command is not available", train.TRAIN_MODULE)
    # The other commands do not need it.
    assert run(capsys, "--help")[0] == 0


ONE_STEP = ("--max-steps", "1", "--quiet")


@pytest.mark.slow
def test_train_removes_the_temporary_files_a_killed_run_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus, out = write_training_text(tmp_path / "train.txt", 40), tmp_path / "run"
    out.mkdir()
    stale = [out / ".checkpoint.pt.0123abcd.tmp", out / ".result.json.89abcdef.tmp"]
    for path in stale:
        path.write_bytes(b"half written")
    staging = out / ".model.00ff00ff.tmp"
    staging.mkdir()
    (staging / "weights.hdf5").write_bytes(b"half written")
    assert run(capsys, "train", corpus, "-o", out, *TINY_TRAIN, "--max-steps", "1", "--quiet")[0] == 0
    assert sorted(path.name for path in out.iterdir()) == ["checkpoint.pt", "model", "result.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX resource limits")
@pytest.mark.slow
def test_train_checkpoint_past_a_real_write_error_is_one_line(tmp_path: Path) -> None:
    corpus, out = write_training_text(tmp_path / "train.txt", 40), tmp_path / "run"
    process = subprocess.run(
        [sys.executable, "-m", "flair_elmo_modes", "train", str(corpus), "-o", str(out), *TINY_TRAIN, *ONE_STEP],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: limit_file_size(20_000),
    )
    assert process.returncode == 1, process.stderr[-3000:]
    assert process.stderr == f"error: cannot write {out / 'checkpoint.pt'}: File too large\n"
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_train_checkpoint_on_a_full_disk_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, out = write_training_text(tmp_path / "train.txt", 40), tmp_path / "run"
    full_disk(monkeypatch, capacity=10_000)
    code, stdout, err = run(capsys, "train", corpus, "-o", out, *TINY_TRAIN, "--max-steps", "1", "--quiet")
    assert code == 1 and stdout == ""
    assert_one_line_error(err, f"error: cannot write {out / 'checkpoint.pt'}: No space left on device")
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_train_export_on_a_full_disk_is_one_line_and_keeps_the_old_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, out = write_training_text(tmp_path / "train.txt", 40), tmp_path / "run"
    assert run(capsys, "train", corpus, "-o", out, *TINY_TRAIN, "--max-steps", "1", "--quiet")[0] == 0
    model_files = snapshot(out / "model")
    full_disk(monkeypatch, capacity=0, only=lambda path: path.parent.name.startswith(".model."))
    code, _, err = run(capsys, "train", corpus, "-o", out, *TINY_TRAIN, "--max-steps", "2", "--quiet")
    assert code == 1
    assert_one_line_error(err, f"error: cannot write {out / 'model'}: No space left on device")
    assert snapshot(out / "model") == model_files
    assert sorted(path.name for path in out.iterdir()) == ["checkpoint.pt", "model", "result.json"]


# --------------------------------------------------------------------------------------------
# out of memory: one line


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("std::bad_alloc"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you "
            "tried to allocate 10737418240 bytes. Error code 12 (Cannot allocate memory)"
        ),
        MemoryError(),
    ],
    ids=["bad_alloc", "torch", "MemoryError"],
)
@pytest.mark.slow
def test_train_out_of_memory_is_one_line_naming_the_options_that_bound_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    from flair_elmo_modes.cli import train_command as command
    from flair_elmo_modes.training import StepInfo, train_bilm

    def allocation_fails(info: StepInfo) -> None:  # raised after the first step, as by a step
        raise error

    monkeypatch.setattr(command, "train_bilm", functools.partial(train_bilm, on_step=allocation_fails))
    corpus = write_training_text(tmp_path / "train.txt", 40)
    code, _, err = run(capsys, "train", corpus, "-o", tmp_path / "run", *TINY_TRAIN, "--quiet")
    assert code == 1
    assert_one_line_error(
        err, "out of memory while training", "--batch-size (now 64)", "--max-sentence-tokens (now 400)"
    )


# --------------------------------------------------------------------------------------------
# the trainer's log lines on stderr


@pytest.mark.slow
def test_train_shows_the_trainer_log_lines_on_stderr_and_quiet_hides_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus, dev, out = (
        write_training_text(tmp_path / "train.txt", 40),
        write_training_text(tmp_path / "dev.txt", 8),
        tmp_path / "run",
    )
    flags = ["--dev", dev, *TINY_TRAIN, "--no-progress"]
    code, stdout, err = run(capsys, "train", corpus, "-o", out, *flags, "--epochs", "2")
    assert code == 0 and json.loads(stdout)["steps"] == 2
    lines = err.splitlines()
    assert lines[0].startswith("training text: 1 shard(s), 40 sentences")
    assert [line.split(":")[0] for line in lines[1:3]] == ["epoch 1", "epoch 2"] and "dev_forward=" in lines[1]
    assert lines[3].startswith(f"exported {out / 'model'}") and len(lines) == 4
    code, stdout, err = run(capsys, "train", corpus, "-o", out, *flags, "--epochs", "2")
    assert code == 0 and f"resumed from {out / 'checkpoint.pt'} at epoch 3, step 2" in err
    code, stdout, err = run(capsys, "train", corpus, "-o", out, *flags, "--epochs", "3", "--quiet")
    assert code == 0 and err == "" and json.loads(stdout)["steps"] == 3
