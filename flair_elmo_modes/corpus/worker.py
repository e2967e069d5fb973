"""The worker's side of a corpus job: a Ray Data actor that holds the biLM and embeds whole shards.

One call embeds one shard with :func:`~flair_elmo_modes.hdf5_output.write_embeddings`, the
function ``flair-elmo embed`` writes with, into ``OUTPUT_DIR/<stem>.hdf5`` (written beside and
renamed when complete). The batches are therefore exactly those of ``flair-elmo embed`` on the
same shard, and so are the vectors: bit for bit on the CPU when the actor runs as many torch
threads as the ``embed`` run (MKL's float32 products may round differently for another thread
count, e.g. on AMD EPYC), and to float32 rounding otherwise.

Nothing here imports Ray at module level: :class:`ProgressBoard` becomes a Ray actor in
:mod:`flair_elmo_modes.corpus.job`, and :class:`ShardWorker` is the callable class Ray Data
instantiates once per actor.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from flair_elmo_modes.checksums import file_sha256
from flair_elmo_modes.corpus.settings import EmbedSettings

#: Seconds between two progress reports of a worker (each one also asks whether the job was cancelled).
REPORT_INTERVAL = 0.5

OK, FAILED, CANCELLED = "complete", "failed", "cancelled"


class ShardCancelled(Exception):
    """The driver cancelled the job (interrupted): the shard is left for the next run."""


class ShardChanged(Exception):
    """The input's bytes differ from those the driver hashed when it planned the job."""


class ProgressBoard:
    """Shared by the driver and the workers (as a Ray actor): sentences done per shard, attempts
    per shard, and the cancel flag.

    A retried shard starts again from 0 sentences, so the whole job's count stays exact.
    """

    def __init__(self) -> None:
        self._done: dict[str, int] = {}
        self._attempts: dict[str, int] = {}
        self._cancelled = False

    def begin(self, shard: str) -> tuple[int, bool]:
        """A worker starts ``shard``: the attempt's number (1 for the first), and whether the job is cancelled."""
        self._attempts[shard] = self._attempts.get(shard, 0) + 1
        self._done[shard] = 0
        return self._attempts[shard], self._cancelled

    def report(self, shard: str, done: int) -> bool:
        """``done`` sentences of ``shard`` are written; returns whether the job is cancelled."""
        self._done[shard] = done
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True

    def is_cancelled(self) -> bool:
        return self._cancelled

    def sentences_done(self) -> int:
        return sum(self._done.values())


class _HashingReader:
    """Iterates the lines of a binary file and hashes every byte read (SHA-256)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()
        self.finished = False

    def __iter__(self) -> Iterator[bytes]:
        for raw in self._handle:
            self._digest.update(raw)
            yield raw
        self.finished = True

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class ShardWorker:
    """Embeds shards; Ray Data creates one per actor, which loads the biLM once.

    Args:
        settings: the model and output flags (as ``flair-elmo embed``'s arguments).
        board: the job's :class:`ProgressBoard` actor.
        threads: torch threads (the CPUs Ray gave the actor).
        use_gpu: put the biLM on the actor's GPU (Ray sets ``CUDA_VISIBLE_DEVICES``: it is device 0).
        max_attempts: a shard whose worker died this many times fails instead of being tried again.

    Called with a batch of shards (columns ``shard``, ``path``, ``output``, ``lines``,
    ``sha256``), it returns one row per shard: ``shard``, ``status`` (``complete``, ``failed``,
    ``cancelled``), ``error`` ("" if none), ``sentences``, ``tokens``, ``attempts``, ``seconds``.
    """

    def __init__(
        self, settings: EmbedSettings, board: Any, threads: int, use_gpu: bool = False, max_attempts: int = 3
    ) -> None:
        import torch

        from flair_elmo_modes.embedding_spec import build_embedder

        torch.set_num_threads(threads)
        self.settings = settings
        self.board = board
        self.max_attempts = max_attempts
        self._last_report = 0.0
        # Exactly as flair-elmo embed builds it: any model its --model accepts works here.
        self.embedder, self.mode = build_embedder(settings.embedding_spec(cuda_device=0 if use_gpu else -1))

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        rows = [
            self.embed_shard(str(shard), Path(str(path)), Path(str(output)), int(lines), str(sha256))
            for shard, path, output, lines, sha256 in zip(
                batch["shard"], batch["path"], batch["output"], batch["lines"], batch["sha256"], strict=True
            )
        ]
        return {key: [row[key] for row in rows] for key in rows[0]}

    def embed_shard(self, shard: str, path: Path, output: Path, lines: int, sha256: str) -> dict[str, Any]:
        """Embed one shard into ``output``; a failure is returned as a row, never raised."""
        import ray

        from flair_elmo_modes.hdf5_output import write_embeddings
        from flair_elmo_modes.text import read_lines

        attempt, cancelled = ray.get(self.board.begin.remote(shard))
        start = time.perf_counter()

        def row(
            status: str, error: str = "", sentences: int = 0, tokens: int = 0, output_sha256: str = ""
        ) -> dict[str, Any]:
            seconds = time.perf_counter() - start
            return dict(shard=shard, status=status, error=error, sentences=sentences, tokens=tokens,
                        attempts=attempt, seconds=seconds, output_sha256=output_sha256)  # fmt: skip

        if cancelled:
            return row(CANCELLED)
        if attempt > self.max_attempts:
            return row(FAILED, f"{path}: a worker died on this shard {attempt - 1} times; not tried again")
        done = 0
        self._last_report = time.perf_counter()

        def batch_written(count: int) -> None:
            nonlocal done
            done += count
            self.batch_done(shard, done)

        try:
            with path.open("rb") as handle:
                reader = _HashingReader(handle)

                def unchanged() -> None:  # after every batch and just before the rename
                    if reader.finished and reader.hexdigest() != sha256:
                        raise ShardChanged(f"{path} changed while the job ran (its SHA-256 differs); run again")

                summary = write_embeddings(
                    output,
                    read_lines(reader, path),  # type: ignore[arg-type]  # iterated only
                    self.embedder.runner,
                    self.mode,
                    batch_size=self.settings.batch_size,
                    sort_batches=self.settings.sort_batches,
                    use_sentence_keys=self.settings.use_sentence_keys,
                    forget_sentences=self.settings.forget_sentences,
                    expected_lines=lines,
                    check=unchanged,
                    progress=batch_written,
                )
        except ShardCancelled:
            return row(CANCELLED, sentences=done)
        except Exception as error:  # any failure is this shard's; the other shards go on
            return row(FAILED, _describe(path, error), sentences=done)
        self.board.report.remote(shard, summary.sentences)
        # HDF5 keeps no checksum: the manifest records the output's, and a rerun redoes a changed file
        return row(OK, sentences=summary.sentences, tokens=summary.tokens, output_sha256=file_sha256(output))

    def batch_done(self, shard: str, done: int) -> None:
        """Called after every batch written: ``done`` sentences of ``shard`` are in its file.

        Reports to the board every :data:`REPORT_INTERVAL` seconds at most.

        Raises:
            ShardCancelled: the driver cancelled the job.
        """
        import ray

        if time.perf_counter() - self._last_report < REPORT_INTERVAL:
            return
        self._last_report = time.perf_counter()
        if ray.get(self.board.report.remote(shard, done)):
            raise ShardCancelled(shard)


def _describe(path: Path, error: BaseException) -> str:
    """One line naming the shard: the error messages of our own code name it already."""
    from flair_elmo_modes.errors import describe_failure
    from flair_elmo_modes.hdf5_output import EmbedInputError
    from flair_elmo_modes.text import TextError

    if isinstance(error, (EmbedInputError, TextError)):  # the driver read the shard before without them
        return f"{path} changed while the job ran ({error}); run again"
    message = describe_failure(error) or f"{type(error).__name__}: {error}"
    message = " ".join(message.split("\n"))
    return message if str(path) in message else f"{path}: {message}"
