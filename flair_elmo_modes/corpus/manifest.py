"""``OUTPUT_DIR/manifest.json``: per shard what was embedded from what, and whether it is complete.

Layout (JSON)::

    {"format": "flair-elmo embed-corpus manifest", "version": 1,
     "shards": {"<output file name>": {
         "input": "/abs/path/shard.txt", "sha256": "...", "lines": 1000,
         "model": {"name": "en-tiny", "format": "allennlp", "files": {"options.json": "<sha256>", ...}},
         "mode": "all", "flags": {"batch_size": 64, ...}, "package_version": "0.1.0",
         "status": "complete" | "failed" | "pending", "error": "...", "output": "shard.hdf5",
         "datasets": 1001, "tokens": 23456, "output_sha256": "...", "attempts": 1,
         "finished_at": "2026-01-01T12:00:00+00:00"}}}

``datasets`` counts every dataset of the output (``sentence_to_index`` included);
``output_sha256`` is the SHA-256 of the complete output file (HDF5 keeps no checksum of its data). The file is
rewritten atomically after every shard, so an interrupted job leaves a valid manifest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flair_elmo_modes.atomic import atomic_write_json
from flair_elmo_modes.errors import UsageError

MANIFEST_NAME = "manifest.json"
FORMAT = "flair-elmo embed-corpus manifest"
VERSION = 1

COMPLETE, FAILED, PENDING = "complete", "failed", "pending"


@dataclass
class ShardEntry:
    """The manifest's record of one shard (the fields of the module docstring)."""

    input: str
    sha256: str
    lines: int
    model: dict[str, Any]
    mode: str
    flags: dict[str, Any]
    package_version: str
    output: str
    status: str = PENDING
    error: str | None = None
    datasets: int | None = None
    tokens: int | None = None
    output_sha256: str | None = None
    attempts: int = 0
    finished_at: str | None = None

    @classmethod
    def from_json(cls, data: Any, where: str) -> ShardEntry:
        names = {f for f in cls.__dataclass_fields__}
        if not isinstance(data, dict) or not {"input", "sha256", "status", "output"} <= data.keys():
            raise UsageError(f"{where}: not a shard entry of a flair-elmo embed-corpus manifest")
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Manifest:
    """All shard entries of one output directory, keyed by output file name."""

    path: Path
    shards: dict[str, ShardEntry] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """The manifest at ``path``, or an empty one if there is none.

        Raises:
            UsageError: ``path`` holds something else (it is not overwritten then).
        """
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise UsageError(f"{path}: cannot be read as a manifest ({error}); move it away to start afresh") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UsageError(f"{path}: not a flair-elmo embed-corpus manifest; choose another output directory")
        if data.get("version") != VERSION:
            raise UsageError(f"{path}: manifest version {data.get('version')!r}, this release reads version {VERSION}")
        shards = data.get("shards")
        if not isinstance(shards, dict):
            raise UsageError(f"{path}: 'shards' is not an object")
        return cls(path, {name: ShardEntry.from_json(entry, f"{path}: {name!r}") for name, entry in shards.items()})

    def save(self) -> None:
        """Write the manifest atomically (readers never see a partial file)."""
        data = {
            "format": FORMAT,
            "version": VERSION,
            "shards": {name: asdict(entry) for name, entry in sorted(self.shards.items())},
        }
        atomic_write_json(self.path, data)
