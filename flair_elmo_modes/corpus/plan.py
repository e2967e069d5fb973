"""The driver's side of a corpus job, before any worker starts: shards, hashes, model identity,
and which shards a rerun can skip. No Ray here."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flair_elmo_modes import checksums
from flair_elmo_modes.corpus.manifest import COMPLETE, MANIFEST_NAME, ShardEntry
from flair_elmo_modes.errors import UsageError
from flair_elmo_modes.models import ALLENNLP, ModelFiles

OUTPUT_SUFFIX = ".hdf5"


@dataclass(frozen=True)
class Shard:
    """One input file and the name of its output in the output directory."""

    path: Path
    output: str


def output_name(path: Path) -> str:
    """``<shard file name without its extension>.hdf5``: ``books/part-001.txt`` -> ``part-001.hdf5``."""
    return path.stem + OUTPUT_SUFFIX


def resolve_corpus(inputs: Sequence[str | Path], output_dir: Path) -> list[Shard]:
    """The shards of ``inputs`` (files, directories, globs; see
    :func:`~flair_elmo_modes.text.resolve_shards`), each with its output name.

    Raises:
        UsageError: no input, a path that names nothing, a glob or directory without files, two
            shards with the same output name, a shard that is one of the outputs, or an
            unreadable shard.
    """
    from flair_elmo_modes.text import TextError, resolve_shards

    if not inputs:
        raise UsageError("no input given: expected text files, directories or globs")
    try:
        paths = resolve_shards(inputs, what="input")
    except (FileNotFoundError, TextError) as error:
        raise UsageError(str(error)) from None
    shards: dict[str, Shard] = {}
    reserved = {(output_dir / MANIFEST_NAME).resolve()}
    for path in paths:
        shard = Shard(path.resolve(), output_name(path))
        if shard.output in shards:
            raise UsageError(
                f"{shards[shard.output].path} and {shard.path} would both be written to "
                f"{output_dir / shard.output}; rename one of them (outputs are named after the input file)"
            )
        if shard.path in reserved | {(output_dir / shard.output).resolve()}:
            raise UsageError(f"input {shard.path} is an output of this job; put the outputs in another directory")
        if not os.access(shard.path, os.R_OK):
            raise UsageError(f"input file {shard.path}: permission denied")
        shards[shard.output] = shard
    return list(shards.values())


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file's bytes, as hex digits.

    Raises:
        UsageError: the file cannot be read.
    """
    try:
        return checksums.file_sha256(path)
    except OSError as error:
        raise UsageError(f"input file {path}: {error.strerror or error}") from None


def model_identity(files: ModelFiles) -> dict[str, Any]:
    """The model's name, format and the SHA-256 of each of its files: equal only for the same weights.

    A model in another format than AllenNLP's is a directory: all its files count.
    """
    paths = {files.options_file, files.weight_file}
    if files.format != ALLENNLP:
        paths |= {path for path in files.directory.rglob("*") if path.is_file()}
    root = os.path.commonpath([str(path.parent) for path in paths])
    hashes = {os.path.relpath(path, root): file_sha256(path) for path in sorted(paths)}
    return {"name": files.name, "format": files.format, "files": hashes}


def count_datasets(path: Path) -> int | None:
    """The number of datasets in an HDF5 output file, ``None`` if it is missing or unreadable."""
    if not path.is_file():
        return None
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return len(handle.keys())
    except (OSError, RuntimeError):
        return None


def expected_datasets(lines: int, use_sentence_keys: bool, forget_sentences: bool) -> int:
    """Datasets a complete output holds: one per line, plus ``sentence_to_index`` unless left out."""
    return lines + (0 if use_sentence_keys or forget_sentences else 1)


def redo_reason(old: ShardEntry | None, new: ShardEntry, output_dir: Path) -> str | None:
    """Why a shard must be embedded (again), or ``None`` if its output can be kept.

    Kept only if the manifest says complete for the same input bytes, model files, mode, flags
    and package version, and the output file exists with the recorded number of datasets and the
    recorded SHA-256 (a damaged or edited output is embedded again).
    """
    if old is None:
        return "new"
    if old.status != COMPLETE:
        return f"{old.status} before"
    for what, before, now in (
        ("input changed", old.sha256, new.sha256),
        ("model changed", old.model, new.model),
        ("layer mode changed", old.mode, new.mode),
        ("flags changed", old.flags, new.flags),
        ("package version changed", old.package_version, new.package_version),
    ):
        if before != now:
            return what
    datasets = expected_datasets(old.lines, new.flags["use_sentence_keys"], new.flags["forget_sentences"])
    found = count_datasets(output_dir / old.output)
    if found is None:
        return "output missing or unreadable"
    if found != datasets or old.datasets != datasets:
        return f"output holds {found} datasets, expected {datasets}"
    if old.output_sha256 is None:
        return "no output checksum recorded"
    try:
        if checksums.file_sha256(output_dir / old.output) != old.output_sha256:
            return "output changed since it was written (its SHA-256 differs)"
    except OSError:
        return "output missing or unreadable"
    return None
