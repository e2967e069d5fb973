"""Checks shared by the corpus-job tests: ``flair-elmo embed``'s output as the reference."""

from __future__ import annotations

from pathlib import Path

import h5py

from flair_elmo_modes.cli import main
from flair_elmo_modes.models import SHIPPED_MODEL
from tests.corpus.conftest import CLUSTER_CPUS, WORKERS
from tests.helpers import torch_threads

#: torch threads of a worker of a job of WORKERS workers on the tests' cluster (embed_corpus's default).
WORKER_THREADS = CLUSTER_CPUS // WORKERS


def embed_reference(shard: Path, output: Path, *flags: str, threads: int = WORKER_THREADS) -> Path:
    """``flair-elmo embed SHARD OUTPUT --model en-tiny FLAGS`` with ``threads`` torch threads: what a
    corpus worker with as many threads must write for ``shard``, bit for bit (MKL's float32 products
    may round differently for another thread count, e.g. on AMD EPYC)."""
    with torch_threads(threads):
        assert main(["embed", str(shard), str(output), "--model", SHIPPED_MODEL, "--quiet", *flags]) == 0
    return output


def assert_same_file(actual: Path, expected: Path) -> None:
    """The same datasets with the same dtype, shape and bytes (the JSON index as the same text)."""
    with h5py.File(actual, "r") as got, h5py.File(expected, "r") as want:
        assert sorted(got) == sorted(want)
        for key in want:
            a, b = got[key][()], want[key][()]
            assert (a.dtype, a.shape) == (b.dtype, b.shape), key
            if b.dtype.kind == "O":
                assert list(a) == list(b), key
            else:
                assert a.tobytes() == b.tobytes(), key


def temp_files(directory: Path) -> list[str]:
    """Files an atomic write left behind (``.name.hex.tmp``)."""
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".tmp"))
