"""``hdf5_output.py``: the one writer of allennlp's HDF5 layout (for the CLI and ``embed_file``)."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest

from flair_elmo_modes.hdf5_output import EmbedInputError, input_problems, write_embeddings
from flair_elmo_modes.layers import parse_mode
from flair_elmo_modes.runner import BiLmRunner
from flair_elmo_modes.text import Line
from tests.helpers import random_bilm


def lines(*texts: str) -> list[Line]:
    return [Line(number, text) for number, text in enumerate(texts, start=1)]


def test_input_problems_lists_every_problem_once() -> None:
    assert input_problems(lines("a", "b"), use_sentence_keys=True) == (2, [])
    count, problems = input_problems(lines("a", "", "a/b", "a", ""), use_sentence_keys=True, keys_name="--keys")
    assert count == 5
    assert problems == [
        "2 empty lines at lines 2, 5; remove them",
        "--keys needs distinct sentences, but line 4 repeats line 1 ('a')",
        "--keys: line 3 cannot name an HDF5 dataset ('/' separates groups, NUL ends a name, '.' is the file itself)",
        "drop --keys to name datasets by line index",
    ]


@pytest.fixture
def runner() -> BiLmRunner:
    return BiLmRunner(random_bilm())


def test_check_runs_after_every_batch_and_before_the_rename(tmp_path: Path, runner: BiLmRunner) -> None:
    output = tmp_path / "out.hdf5"
    events: list[object] = []

    def check() -> None:
        events.append(("check", output.exists()))

    summary = write_embeddings(
        output,
        lines("a b", "c", "d e f", "g"),
        runner,
        parse_mode("top", 3),
        batch_size=2,
        check=check,
        progress=lambda count: events.append(("progress", count)),
    )
    assert (summary.sentences, summary.tokens) == (4, 7)
    # after each of the 2 batches, then once more after the fsync, before the rename
    assert events == [("check", False), ("progress", 2), ("check", False), ("progress", 2), ("check", False)]
    with h5py.File(output, "r") as handle:
        assert sorted(handle) == ["0", "1", "2", "3", "sentence_to_index"] and handle["2"].shape == (3, 16)


class Stop(Exception):
    pass


def test_an_exception_of_check_keeps_the_old_file(tmp_path: Path, runner: BiLmRunner) -> None:
    output = tmp_path / "out.hdf5"
    output.write_bytes(b"old")
    calls = []

    def stop_at_the_end() -> None:  # lets every batch through, stops just before the rename
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    with pytest.raises(Stop):
        write_embeddings(output, lines("a", "b", "c", "d"), runner, parse_mode("all", 3), 2, check=stop_at_the_end)
    assert output.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [output]


def test_input_that_changed_since_it_was_counted_is_an_error(tmp_path: Path, runner: BiLmRunner) -> None:
    mode = parse_mode("all", 3)
    with pytest.raises(EmbedInputError, match="line 2 is empty"):
        write_embeddings(tmp_path / "a.hdf5", lines("a", ""), runner, mode, batch_size=4)
    with pytest.raises(EmbedInputError, match="3 lines, then 2"):
        write_embeddings(tmp_path / "b.hdf5", lines("a", "b"), runner, mode, batch_size=4, expected_lines=3)
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_files_of_the_output_are_removed_first(tmp_path: Path, runner: BiLmRunner) -> None:
    stale, other = tmp_path / ".out.hdf5.0123abcd.tmp", tmp_path / ".out.hdf5.x.tmp"
    stale.write_bytes(b"left by a killed run")
    other.write_bytes(b"not our name")
    write_embeddings(tmp_path / "out.hdf5", lines("a"), runner, parse_mode("all", 3), batch_size=1)
    assert sorted(path.name for path in tmp_path.iterdir()) == [".out.hdf5.x.tmp", "out.hdf5"]
