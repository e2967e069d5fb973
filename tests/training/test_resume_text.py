"""A checkpoint resumes only on the bytes it was trained on: an edited, added or removed shard, or an
edited vocabulary file, stops the run with one error naming it (or, with ``--allow-changed-text``, a
warning); a shard touched but unchanged resumes."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from flair_elmo_modes.cli import main
from flair_elmo_modes.training import TrainConfig, train_bilm
from flair_elmo_modes.training.data import TrainingDataError
from tests.helpers import TINY_OPTIONS
from tests.training.conftest import write_corpus


def config_for(directory: Path, **changes: object) -> TrainConfig:
    """Three shards of ``directory/text``, a tiny model, 3 steps with a checkpoint after each."""
    config = TrainConfig(
        train_files=(str(directory / "text"),),
        output_dir=directory / "run",
        options=TINY_OPTIONS,
        cutoffs=(8,),
        batch_size=16,
        max_steps=3,
        checkpoint_every=1,
        progress=False,
    )
    return dataclasses.replace(config, **changes)


@pytest.fixture
def started(tmp_path: Path) -> TrainConfig:
    """A run that trained 3 steps on three shards and left its checkpoint."""
    (tmp_path / "text").mkdir()
    for i in range(3):
        write_corpus(tmp_path / "text" / f"part-{i}.txt", 40, seed=i)
    config = config_for(tmp_path)
    train_bilm(config)
    return dataclasses.replace(config, max_steps=4)


def checkpoint_text(config: TrainConfig) -> dict:
    return torch.load(config.output_dir / "checkpoint.pt", weights_only=True)["text"]


def test_the_checkpoint_records_each_shard_and_the_vocabulary(started: TrainConfig) -> None:
    text = checkpoint_text(started)
    shards = sorted((Path(started.train_files[0])).iterdir())
    assert [entry["path"] for entry in text["shards"]] == [str(path.resolve()) for path in shards]
    for entry, path in zip(text["shards"], shards, strict=True):
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert (entry["size"], entry["mtime_ns"]) == (path.stat().st_size, path.stat().st_mtime_ns)
    assert text["vocab_file"] is None  # counted in the text


def edit(config: TrainConfig) -> str:
    path = Path(config.train_files[0]) / "part-1.txt"
    path.write_text(path.read_text(encoding="utf-8") + "the big cat ran .\n", encoding="utf-8")
    return f"{path.resolve()} changed"


def add(config: TrainConfig) -> str:
    path = write_corpus(Path(config.train_files[0]) / "part-3.txt", 10, seed=9)
    return f"{path.resolve()} was added"


def remove(config: TrainConfig) -> str:
    path = Path(config.train_files[0]) / "part-2.txt"
    path.unlink()
    return f"{path.resolve()} was removed"


@pytest.mark.parametrize("change", [edit, add, remove])
def test_resume_on_changed_text_stops_naming_the_shard(started: TrainConfig, change, capsys) -> None:
    before = (started.output_dir / "checkpoint.pt").read_bytes()
    named = change(started)
    with pytest.raises(
        TrainingDataError, match=rf"^{named}.* since .*checkpoint\.pt was written.*--allow-changed-text"
    ):
        train_bilm(started)
    assert (started.output_dir / "checkpoint.pt").read_bytes() == before  # nothing trained, nothing written
    # the command line: one error line, exit 2
    argv = ["train", started.train_files[0], "--output", str(started.output_dir), "--options", str(options(started))]
    assert main([*argv, "--max-steps", "4", "--cutoffs", "8", "--batch-size", "16", "--quiet"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: {named}")


def options(config: TrainConfig) -> Path:
    path = config.output_dir.parent / "options.json"
    if not path.exists():
        shutil.copy(config.output_dir / "model" / "options.json", path)
    return path


def test_allow_changed_text_resumes_with_a_warning_and_records_the_new_text(
    started: TrainConfig, caplog: pytest.LogCaptureFixture
) -> None:
    named = edit(started)
    with caplog.at_level(logging.WARNING, logger="flair_elmo_modes.training.checkpoint"):
        result = train_bilm(dataclasses.replace(started, allow_changed_text=True))
    assert result.steps == 4  # resumed at step 3, not started over
    assert any(named in record.getMessage() and record.levelno == logging.WARNING for record in caplog.records)
    path = Path(started.train_files[0]) / "part-1.txt"
    recorded = {entry["path"]: entry["sha256"] for entry in checkpoint_text(started)["shards"]}
    assert recorded[str(path.resolve())] == hashlib.sha256(path.read_bytes()).hexdigest()
    train_bilm(dataclasses.replace(started, max_steps=5))  # the new text is now the checkpoint's: no flag needed


def test_a_shard_touched_but_unchanged_resumes(started: TrainConfig) -> None:
    path = Path(started.train_files[0]) / "part-0.txt"
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))
    assert train_bilm(started).steps == 4


def test_an_edited_vocabulary_file_stops_the_resume(tmp_path: Path) -> None:
    (tmp_path / "text").mkdir()
    write_corpus(tmp_path / "text" / "part-0.txt", 40, seed=0)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("<S>\n</S>\n<UNK>\nthe\ncat\ndog\n", encoding="utf-8")
    config = config_for(tmp_path, vocab_file=vocab)
    train_bilm(config)
    assert checkpoint_text(config)["vocab_file"]["sha256"] == hashlib.sha256(vocab.read_bytes()).hexdigest()
    vocab.write_text("<S>\n</S>\n<UNK>\nthe\ncat\nmat\n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match=rf"the vocabulary file {vocab.resolve()} changed"):
        train_bilm(dataclasses.replace(config, max_steps=4))
