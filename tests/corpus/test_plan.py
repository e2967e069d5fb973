"""The driver's checks, without Ray: errors before any worker starts, the manifest, and the skip rule."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import h5py
import pytest

from flair_elmo_modes.cli import main
from flair_elmo_modes.corpus import MANIFEST_NAME, EmbedSettings, ShardsFailed, embed_corpus
from flair_elmo_modes.corpus.manifest import COMPLETE, Manifest, ShardEntry
from flair_elmo_modes.corpus.plan import count_datasets, model_identity, output_name, redo_reason, resolve_corpus
from flair_elmo_modes.errors import UsageError
from flair_elmo_modes.models import SHIPPED_MODEL, resolve_model
from tests.corpus.conftest import write_corpus

TINY = EmbedSettings(model=SHIPPED_MODEL)


def test_output_names_drop_the_last_extension() -> None:
    assert output_name(Path("books/part-001.txt")) == "part-001.hdf5"
    assert output_name(Path("a.b.txt")) == "a.b.hdf5"
    assert output_name(Path("README")) == "README.hdf5"


def test_inputs_are_files_directories_and_globs_each_once(tmp_path: Path) -> None:
    shards = write_corpus(tmp_path / "c", (2, 2, 2))
    found = resolve_corpus([shards[0], tmp_path / "c", str(tmp_path / "c" / "part-*.txt")], tmp_path / "out")
    assert [shard.path for shard in found] == [path.resolve() for path in shards]
    assert [shard.output for shard in found] == ["part-0.hdf5", "part-1.hdf5", "part-2.hdf5"]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "input not found: "),
        ("glob", "the pattern matches no file"),
        ("empty-dir", "a directory without files"),
        ("same-name", "would both be written to"),
        ("unknown-model", "unknown ELMo model 'no-such-model'"),
        ("layer-out-of-range", "--layers 0,5: layer 5 is out of range; this model has 3 layers"),
        ("output-is-input", "is an output of this job"),
    ],
)
def test_bad_arguments_fail_before_any_worker_starts(tmp_path: Path, case: str, expected: str) -> None:
    (shard,) = write_corpus(tmp_path / "c", (3,))
    inputs: list[str | Path] = [shard]
    output_dir = tmp_path / "out"
    settings = TINY
    if case == "missing":
        inputs = [tmp_path / "nope.txt"]
    elif case == "glob":
        inputs = [str(tmp_path / "c" / "*.tsv")]
    elif case == "empty-dir":
        (tmp_path / "empty").mkdir()
        inputs = [tmp_path / "empty"]
    elif case == "same-name":
        other = tmp_path / "d" / "part-0.txt"
        other.parent.mkdir()
        shutil.copy(shard, other)
        inputs = [shard, other]
    elif case == "unknown-model":
        settings = EmbedSettings(model="no-such-model")
    elif case == "layer-out-of-range":
        settings = EmbedSettings(model=SHIPPED_MODEL, layers=(0, 5))
    elif case == "output-is-input":
        output_dir = tmp_path / "c"
        inputs = [tmp_path / "c" / MANIFEST_NAME]
        (tmp_path / "c" / MANIFEST_NAME).write_text("a line\n", encoding="utf-8")
    with pytest.raises(UsageError) as error:
        embed_corpus(inputs, output_dir, settings, workers=2, progress=False)
    assert expected in str(error.value)
    if case != "output-is-input":
        assert not output_dir.exists()  # nothing was planned, let alone started


def test_the_command_reports_a_bad_model_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (shard,) = write_corpus(tmp_path / "c", (3,))
    assert main(["embed-corpus", str(shard), str(tmp_path / "out"), "--model", "no-such-model"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown ELMo model 'no-such-model'")


def test_a_foreign_manifest_is_left_alone(tmp_path: Path) -> None:
    (shard,) = write_corpus(tmp_path / "c", (3,))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / MANIFEST_NAME).write_text('{"name": "something else"}', encoding="utf-8")
    with pytest.raises(UsageError, match="not a flair-elmo embed-corpus manifest"):
        embed_corpus([shard], tmp_path / "out", TINY, progress=False)
    assert json.loads((tmp_path / "out" / MANIFEST_NAME).read_text()) == {"name": "something else"}


def test_a_corpus_of_only_bad_shards_fails_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "c" / "bad.txt"
    bad.parent.mkdir()
    bad.write_text("one\n\n", encoding="utf-8")
    with pytest.raises(
        ShardsFailed, match=r"1 of 1 shards failed, 0 are complete.*bad\.txt: an empty line at line 2"
    ) as error:
        embed_corpus([bad], tmp_path / "out", TINY, progress=False)
    assert error.value.bad_input  # the input's fault: the CLI's exit code 2
    entry = Manifest.load(tmp_path / "out" / MANIFEST_NAME).shards["bad.hdf5"]
    assert (entry.status, entry.input) == ("failed", str(bad.resolve()))


def test_model_identity_changes_with_the_weights_bytes_not_the_path(tmp_path: Path) -> None:
    shipped = resolve_model(SHIPPED_MODEL)
    copy = tmp_path / "en-tiny"
    shutil.copytree(shipped.weight_file.parent, copy)
    identity = model_identity(resolve_model(copy))
    assert identity == model_identity(shipped)  # same name, same bytes
    with (copy / "weights.hdf5").open("ab") as handle:
        handle.write(b"\0")
    changed = model_identity(resolve_model(copy))
    assert changed["files"]["options.json"] == identity["files"]["options.json"]
    assert changed["files"]["weights.hdf5"] != identity["files"]["weights.hdf5"]


def _complete_entry(output_dir: Path, lines: int = 3) -> ShardEntry:
    """A complete entry whose output has ``lines`` datasets plus ``sentence_to_index``, with its SHA-256."""
    with h5py.File(output_dir / "s.hdf5", "w") as handle:
        for i in range(lines):
            handle.create_dataset(str(i), data=[float(i) + 0.5])
        handle.create_dataset("sentence_to_index", data=["{}"], dtype=h5py.string_dtype())
    return ShardEntry(
        input="/data/s.txt",
        sha256="ab" * 32,
        lines=lines,
        model={"name": "en-tiny", "files": {"weights.hdf5": "cd" * 32}},
        mode="all",
        flags=TINY.output_flags(),
        package_version="0.1.0",
        output="s.hdf5",
        status=COMPLETE,
        datasets=lines + 1,
        output_sha256=hashlib.sha256((output_dir / "s.hdf5").read_bytes()).hexdigest(),
    )


@pytest.mark.parametrize(
    "change, reason",
    [
        ({}, None),
        ({"input": "/moved/s.txt"}, None),  # the same bytes elsewhere
        ({"sha256": "ef" * 32}, "input changed"),
        ({"model": {"name": "en-tiny", "files": {"weights.hdf5": "00" * 32}}}, "model changed"),
        ({"mode": "top"}, "layer mode changed"),
        ({"flags": {**TINY.output_flags(), "batch_size": 32}}, "flags changed"),
        ({"flags": dataclasses.replace(TINY, precision="bf16").output_flags()}, "flags changed"),
        ({"package_version": "9.9"}, "package version changed"),
    ],
)
def test_a_complete_shard_is_kept_only_if_everything_matches(
    tmp_path: Path, change: dict[str, object], reason: str | None
) -> None:
    old = _complete_entry(tmp_path)
    assert redo_reason(old, dataclasses.replace(old, status="pending", **change), tmp_path) == reason


def test_a_shard_is_redone_if_its_output_is_missing_damaged_or_short(tmp_path: Path) -> None:
    old = _complete_entry(tmp_path)
    new = dataclasses.replace(old, status="pending")
    assert redo_reason(None, new, tmp_path) == "new"
    assert redo_reason(dataclasses.replace(old, status="failed"), new, tmp_path) == "failed before"
    with h5py.File(tmp_path / "s.hdf5", "a") as handle:
        del handle["2"]
    assert redo_reason(old, new, tmp_path) == "output holds 3 datasets, expected 4"
    (tmp_path / "s.hdf5").write_bytes(b"not hdf5")
    assert redo_reason(old, new, tmp_path) == "output missing or unreadable"
    (tmp_path / "s.hdf5").unlink()
    assert redo_reason(old, new, tmp_path) == "output missing or unreadable"


def test_a_shard_is_redone_if_its_output_bytes_changed_or_were_never_hashed(tmp_path: Path) -> None:
    old = _complete_entry(tmp_path)
    new = dataclasses.replace(old, status="pending")
    # a value changed in place: the same datasets, so only the checksum can tell
    with h5py.File(tmp_path / "s.hdf5", "a") as handle:
        handle["1"][0] = 7.25
    assert count_datasets(tmp_path / "s.hdf5") == old.datasets
    assert redo_reason(old, new, tmp_path) == "output changed since it was written (its SHA-256 differs)"
    # a manifest entry of an earlier release, without the output's checksum, cannot vouch for the file
    assert redo_reason(dataclasses.replace(old, output_sha256=None), new, tmp_path) == "no output checksum recorded"


def test_the_manifest_round_trips(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / MANIFEST_NAME, {"s.hdf5": _complete_entry(tmp_path)})
    manifest.save()
    assert Manifest.load(tmp_path / MANIFEST_NAME) == manifest
    assert list(tmp_path.glob(".*.tmp")) == []


def test_settings_reject_bad_values() -> None:
    with pytest.raises(UsageError, match="not both"):
        EmbedSettings(mode="top", layers=(0,))
    with pytest.raises(UsageError, match="batch_size: expected a positive integer, got 0"):
        EmbedSettings(batch_size=0)
    with pytest.raises(UsageError, match="layer mode 'bottom'"):
        EmbedSettings(mode="bottom")
    with pytest.raises(UsageError, match="precision 'int8': expected one of fp32, bf16, fp16"):
        EmbedSettings(precision="int8")
