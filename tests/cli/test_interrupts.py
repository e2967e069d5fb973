"""SIGINT, SIGTERM and SIGHUP stop ``embed`` and ``train`` cleanly (cli/interrupts.py), in-process or as a child."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from flair_elmo_modes import models
from tests.cli.helpers import (
    TINY_TRAIN,
    assert_one_line_error,
    assert_untouched,
    before_each_batch,
    finish,
    long_input,
    needs_shipped_model,
    posix_signals,
    run,
    snapshot,
    start_cli,
    wait_for_temp,
    write_input,
    write_training_text,
)


def test_embed_sigterm_mid_stream_leaves_nothing(
    tmp_path: Path,
    model_dir: Path,
    existing_output: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def terminated(number: int, batch: list[list[str]]) -> None:
        if number == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # recorded: the run stops after this batch

    before_each_batch(monkeypatch, terminated)
    before = signal.getsignal(signal.SIGTERM)
    source = write_input(tmp_path / "in.txt", [f"s {i}" for i in range(10)])
    code, _, err = run(capsys, "embed", source, existing_output, "--model", model_dir, "--batch-size", "2", "--quiet")
    assert code == 128 + signal.SIGTERM
    assert_one_line_error(err, "terminated (SIGTERM)")
    assert_untouched(existing_output)
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is restored


class SignalsWhenCollected:
    """Sends SIGTERM to this process from its destructor: the handler then runs inside ``__del__``,
    where Python only prints an exception ("Exception ignored in ...") and carries on."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # bytecodes inside __del__, where Python runs the pending handler
            pass


def test_a_signal_that_arrives_inside_a_destructor_is_not_swallowed(
    tmp_path: Path,
    model_dir: Path,
    existing_output: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def collecting(number: int, batch: list[list[str]]) -> None:
        calls.append(number)
        if number == 2:
            SignalsWhenCollected()  # collected at once

    before_each_batch(monkeypatch, collecting)
    source = write_input(tmp_path / "in.txt", [f"s {i}" for i in range(10)])
    code, _, err = run(capsys, "embed", source, existing_output, "--model", model_dir, "--batch-size", "2", "--quiet")
    assert code == 128 + signal.SIGTERM  # it used to write the whole output and exit 0
    assert_one_line_error(err, "terminated (SIGTERM)")
    assert_untouched(existing_output)
    assert len(calls) == 2  # stopped after the batch the signal arrived in


def assert_stopped_by(process: subprocess.Popen[str], err: str, signum: int) -> None:
    assert process.returncode == 128 + signum, err
    message = "error: interrupted" if signum == signal.SIGINT else f"error: terminated ({signal.Signals(signum).name})"
    assert err.rstrip().endswith(message), err
    assert err.count("error:") == 1 and "Traceback" not in err and "Exception ignored" not in err


@posix_signals
@needs_shipped_model
@pytest.mark.parametrize(
    ("signum", "delay"),
    [
        (signal.SIGINT, 0.2),
        (signal.SIGTERM, 0.2),
        (signal.SIGHUP, 0.2),
        (signal.SIGTERM, 1.0),
        (signal.SIGHUP, 1.0),
        (signal.SIGINT, 2.0),
        (signal.SIGTERM, 2.0),
    ],
    ids=lambda value: signal.Signals(value).name if isinstance(value, int) else f"{value}s",
)
def test_a_signal_stops_embed_cleanly_wherever_it_arrives(tmp_path: Path, signum: int, delay: float) -> None:
    source = long_input(tmp_path / "in.txt")
    output = tmp_path / "out.hdf5"
    output.write_bytes(b"precious")
    process = start_cli("embed", source, output, "--model", models.SHIPPED_MODEL)
    try:
        wait_for_temp(process, tmp_path)
        time.sleep(delay)
        assert process.poll() is None, "the run ended before the signal was sent"
        process.send_signal(signum)
    finally:
        out, err = finish(process)
    assert_stopped_by(process, err, signum)
    assert out == ""
    assert_untouched(output)


@posix_signals
@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "delay"),
    [(signal.SIGTERM, 0.2), (signal.SIGHUP, 1.0), (signal.SIGINT, 2.0)],
    ids=["SIGTERM-0.2s", "SIGHUP-1.0s", "SIGINT-2.0s"],
)
def test_a_signal_stops_train_cleanly_and_keeps_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signum: int, delay: float
) -> None:
    corpus, out = write_training_text(tmp_path / "train.txt"), tmp_path / "run"
    assert run(capsys, "train", corpus, "-o", out, *TINY_TRAIN, "--max-steps", "2", "--quiet")[0] == 0
    model_files, result = snapshot(out / "model"), (out / "result.json").read_bytes()
    # Resumed for ever: a checkpoint after every epoch (a few steps), so signals also meet checkpoint writes.
    process = start_cli("train", corpus, "-o", out, *TINY_TRAIN, "--epochs", "100000", "--no-progress")
    try:
        assert process.stderr is not None
        for line in process.stderr:  # the trainer's log lines are on stderr
            if line.startswith("resumed from"):
                break
        else:
            raise AssertionError(f"the run never resumed: {finish(process)}")
        time.sleep(delay)
        assert process.poll() is None, "the run ended before the signal was sent"
        process.send_signal(signum)
    finally:
        out_text, err = finish(process)
    assert_stopped_by(process, err, signum)
    assert out_text == ""  # no result JSON: the run did not finish
    assert snapshot(out / "model") == model_files and (out / "result.json").read_bytes() == result
    import torch

    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)  # complete: the old or a newer one
    assert checkpoint["progress"]["step"] >= 2
    assert sorted(path.name for path in out.iterdir()) == ["checkpoint.pt", "model", "result.json"]
