"""The driver of a corpus job: plan the shards, run them on Ray Data, keep the manifest.

Order of work: settings, shards and model are checked first (bad ones are errors before Ray is
touched), every shard is hashed, shards whose manifest entry is complete and still matches
(:func:`~flair_elmo_modes.corpus.plan.redo_reason`) are skipped, the others are checked with
``flair-elmo embed``'s rules (a bad shard is recorded as failed and the others go on) and handed
to a pool of ``workers`` Ray Data actors (:class:`~flair_elmo_modes.corpus.worker.ShardWorker`),
largest first, one shard per call. The manifest is rewritten atomically after every shard.

A worker that dies is restarted by Ray and its shard is tried again (Ray Data's actor fault
tolerance; at most ``max_attempts`` times). An interrupted job (an exception from ``check``, or
Ctrl-C) cancels the workers, which drop their unfinished files, and keeps what is complete.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flair_elmo_modes.corpus.manifest import COMPLETE, FAILED, MANIFEST_NAME, PENDING, Manifest, ShardEntry
from flair_elmo_modes.corpus.plan import (
    Shard,
    expected_datasets,
    file_sha256,
    model_identity,
    redo_reason,
    resolve_corpus,
)
from flair_elmo_modes.corpus.settings import EmbedSettings
from flair_elmo_modes.corpus.worker import CANCELLED, OK, ProgressBoard, ShardWorker
from flair_elmo_modes.errors import ElmoError, UsageError

logger = logging.getLogger(__name__)

#: Seconds between two looks of the driver at the progress board (and at ``check``).
POLL_INTERVAL = 0.25
#: Seconds an interrupted job waits for its workers to drop their unfinished shards.
CANCEL_TIMEOUT = 60.0
#: Loggers of Ray that speak at INFO or WARNING level on every job, quieted unless ``ray_logs``.
RAY_LOGGERS = ("ray", "ray.data")


@dataclass
class CorpusSummary:
    """What a job did: output names of the shards embedded, skipped (complete) and failed."""

    output_dir: Path
    embedded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    sentences: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def manifest(self) -> Path:
        return self.output_dir / MANIFEST_NAME


class ShardsFailed(ElmoError):
    """Some shards failed (named with their errors); the others are complete and kept.

    ``bad_input`` (the CLI's exit code 2) when every failure is a bad input file. ``summary`` tells the rest.
    """

    def __init__(self, summary: CorpusSummary, input_errors_only: bool) -> None:
        count, total = len(summary.failed), len(summary.failed) + len(summary.embedded) + len(summary.skipped)
        listed = "; ".join(summary.failed.values())
        super().__init__(
            f"{count} of {total} shards failed, {total - count} are complete in {summary.output_dir} "
            f"(fix the failed ones and run again: only they are embedded): {listed}"
        )
        self.summary = summary
        self.bad_input = input_errors_only


def embed_corpus(
    inputs: Sequence[str | Path],
    output_dir: str | Path,
    settings: EmbedSettings | None = None,
    *,
    workers: int = 1,
    cpus_per_worker: int | None = None,
    gpus_per_worker: float = 0.0,
    address: str | None = None,
    progress: bool = True,
    file_friendly_logging: bool = False,
    ray_logs: bool = False,
    max_attempts: int = 3,
    check: Callable[[], None] | None = None,
    worker_class: type[ShardWorker] = ShardWorker,
) -> CorpusSummary:
    """Embed every shard of ``inputs`` into ``output_dir/<stem>.hdf5`` on a Ray cluster.

    Args:
        inputs: files, directories (their non-hidden files) or globs; one whitespace-tokenized
            sentence per line, UTF-8.
        output_dir: where the HDF5 files and ``manifest.json`` go (created if missing). On a
            cluster of several machines it must be one shared directory, at the same path on
            every machine, and so must the inputs.
        settings: model and output flags (``flair-elmo embed``'s); the default model otherwise.
        workers: Ray Data actors, each holding the biLM.
        cpus_per_worker: CPUs (and torch threads) per actor; by default the cluster's CPUs
            divided among the workers.
        gpus_per_worker: GPUs per actor (may be a fraction); 0 runs on the CPU.
        address: a running cluster to join (``"auto"``, ``"host:6379"``); ``None`` starts a
            local one for this job. If Ray is already initialized in this process, it is used.
        progress: show a bar over the sentences of the whole job on stderr.
        file_friendly_logging: progress as a line every few seconds instead of a bar.
        ray_logs: let Ray print its own progress bars and logs.
        max_attempts: a shard whose worker died this many times is recorded as failed.
        check: called between shards and about every quarter second; an exception it raises
            (the CLI's ``Interrupted``) stops the job, keeping the complete shards.
        worker_class: the actor class (tests use a subclass that crashes once).

    Returns:
        What was embedded, skipped and how many sentences and tokens.

    Raises:
        UsageError: bad settings, inputs or model (before any worker starts).
        ShardsFailed: some shards failed; the others are complete (and skipped by a rerun).
        ElmoError: Ray could not be started or the job failed as a whole.
    """
    start = time.perf_counter()
    settings = settings or EmbedSettings()
    if workers < 1:
        raise UsageError(f"workers: expected a positive integer, got {workers}")
    if cpus_per_worker is not None and cpus_per_worker < 1:
        raise UsageError(f"cpus per worker: expected a positive integer, got {cpus_per_worker}")
    if gpus_per_worker < 0:
        raise UsageError(f"gpus per worker: expected 0 or more, got {gpus_per_worker}")
    if max_attempts < 1:
        raise UsageError(f"max attempts: expected a positive integer, got {max_attempts}")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"output directory {output_dir} is a file")
    shards = resolve_corpus(inputs, output_dir)
    model, mode = _model_and_mode(settings)
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load(output_dir / MANIFEST_NAME)
    summary = CorpusSummary(output_dir)
    todo = _plan(shards, manifest, model, mode, settings, summary)
    manifest.save()
    input_errors = set(summary.failed)
    if todo:
        with _ray_session(address, ray_logs) as ray:
            cpus = _check_resources(ray, workers, cpus_per_worker, gpus_per_worker, started=address is None)
            _run(ray, todo, manifest, settings, summary, workers, cpus, gpus_per_worker, max_attempts,
                 progress, file_friendly_logging, check, worker_class)  # fmt: skip
    summary.seconds = time.perf_counter() - start
    if summary.failed:
        raise ShardsFailed(summary, input_errors_only=set(summary.failed) <= input_errors)
    return summary


def _model_and_mode(settings: EmbedSettings) -> tuple[dict[str, Any], str]:
    """The model's identity and the layer mode, checked on the driver as ``flair-elmo embed`` checks them."""
    files, mode, _ = settings.embedding_spec().check()
    return model_identity(files), mode.spec


def _plan(
    shards: Sequence[Shard],
    manifest: Manifest,
    model: dict[str, Any],
    mode: str,
    settings: EmbedSettings,
    summary: CorpusSummary,
) -> list[ShardEntry]:
    """Hash every shard, skip the complete ones, check the rest: the entries to embed, largest first."""
    from flair_elmo_modes import __version__
    from flair_elmo_modes.atomic import remove_stale_temps
    from flair_elmo_modes.hdf5_output import check_input

    remove_stale_temps(manifest.path)
    todo = []
    for shard in shards:
        remove_stale_temps(summary.output_dir / shard.output)  # a killed job's; no job is writing now
        old = manifest.shards.get(shard.output)
        entry = ShardEntry(
            input=str(shard.path),
            sha256=file_sha256(shard.path),
            lines=0,
            model=model,
            mode=mode,
            flags=settings.output_flags(),
            package_version=__version__,
            output=shard.output,
        )
        reason = redo_reason(old, entry, summary.output_dir)
        if reason is None and old is not None:
            old.input = entry.input  # the same bytes may have moved
            summary.skipped.append(shard.output)
            logger.debug("%s: complete, skipped", shard.output)
            continue
        if old is not None:
            logger.info("%s: %s; embedding it again", shard.output, reason)
        try:
            entry.lines = check_input(shard.path, settings.use_sentence_keys)
        except UsageError as error:  # names the shard and the lines
            entry.status, entry.error = FAILED, str(error)
            summary.failed[shard.output] = str(error)
            entry.finished_at = _now()
        todo.append(entry)
        manifest.shards[shard.output] = entry
    return sorted((entry for entry in todo if entry.status == PENDING), key=lambda entry: -entry.lines)


@contextmanager
def _ray_session(address: str | None, ray_logs: bool) -> Iterator[Any]:
    """Ray, connected: to ``address``, to the cluster this process already uses, or to a new local one
    (shut down after the block). Ray's progress bars and chatter are off unless ``ray_logs``."""
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ElmoError(
            f"embedding a corpus needs Ray ({error}); install it with: pip install 'flair-elmo-modes[ray]'"
        ) from None
    context = ray.data.DataContext.get_current()
    saved = {name: getattr(context, name) for name in ("enable_progress_bars", "print_on_execution_start")}
    levels = {name: logging.getLogger(name).level for name in RAY_LOGGERS}
    started = False
    try:
        if not ray_logs:
            for name in saved:
                setattr(context, name, False)
            for name in RAY_LOGGERS:
                logging.getLogger(name).setLevel(logging.ERROR)
        if not ray.is_initialized():
            quiet = {} if ray_logs else {"log_to_driver": False, "logging_level": logging.ERROR}
            try:
                if address is None:
                    ray.init(include_dashboard=False, **quiet)
                else:
                    ray.init(address=address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = "a local Ray cluster" if address is None else f"the Ray cluster at {address}"
                raise ElmoError(f"cannot connect to {where}: {' '.join(str(error).split())}") from error
            started = True
        yield ray
    finally:
        if started:
            ray.shutdown()
        for name, value in saved.items():
            setattr(context, name, value)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _check_resources(ray: Any, workers: int, cpus_per_worker: int | None, gpus: float, started: bool) -> int:
    """CPUs per worker; an error if the cluster cannot hold ``workers`` actors at once."""
    resources = ray.cluster_resources()
    cpus, gpus_found = int(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    per_worker = cpus_per_worker if cpus_per_worker is not None else max(1, cpus // workers)
    problems = []
    if workers * per_worker > cpus:
        problems.append(f"{workers} workers x {per_worker} CPUs need {workers * per_worker} CPUs")
    if workers * gpus > gpus_found:
        problems.append(f"{workers} workers x {gpus:g} GPUs need {workers * gpus:g} GPUs")
    if problems:
        message = f"{'; '.join(problems)}, but the Ray cluster has {cpus} CPUs and {gpus_found:g} GPUs"
        if started:
            raise UsageError(message + "; use fewer --workers or a cluster (--address)")
        logger.warning("%s; workers wait until the cluster grows", message)
    return per_worker


def _run(
    ray: Any,
    todo: list[ShardEntry],
    manifest: Manifest,
    settings: EmbedSettings,
    summary: CorpusSummary,
    workers: int,
    cpus: int,
    gpus: float,
    max_attempts: int,
    progress: bool,
    file_friendly_logging: bool,
    check: Callable[[], None] | None,
    worker_class: type[ShardWorker],
) -> None:
    """Embed the ``todo`` shards on Ray Data, recording each result in the manifest as it comes."""
    from flair_elmo_modes.progress import Progress

    board = ray.remote(num_cpus=0)(ProgressBoard).remote()
    items = [
        {"shard": entry.output, "path": entry.input, "output": str(summary.output_dir.resolve() / entry.output),
         "lines": entry.lines, "sha256": entry.sha256}
        for entry in todo
    ]  # fmt: skip
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        worker_class,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=min(workers, len(items)), max_tasks_in_flight_per_actor=1),
        fn_constructor_kwargs={
            "settings": settings,
            "board": board,
            "threads": cpus,
            "use_gpu": gpus > 0,
            "max_attempts": max_attempts,
        },
        num_cpus=cpus,
        num_gpus=gpus or None,
    )
    results: queue.Queue[tuple[str, Any]] = queue.Queue()
    pump = threading.Thread(target=_pump, args=(dataset, results), name="embed-corpus results", daemon=True)
    total = sum(entry.lines for entry in todo)
    shown = 0
    pending = {entry.output: entry for entry in todo}
    with Progress(total, "sentences", "embedding", enabled=progress, lines=file_friendly_logging) as bar:

        def show() -> None:
            nonlocal shown
            done = ray.get(board.sentences_done.remote())
            if done != shown:  # less after a retry: the bar goes back
                bar.update(done - shown)
                shown = done

        pump.start()
        try:
            while True:
                try:
                    kind, item = results.get(timeout=POLL_INTERVAL)
                except queue.Empty:
                    show()
                    if check is not None:
                        check()
                    continue
                if kind == "error":
                    raise ElmoError(f"the Ray job failed: {' '.join(str(item).split())[:2000]}") from item
                if kind == "end":
                    break
                _record(item, pending, manifest, summary)
                show()
                if check is not None:
                    check()
        except BaseException:
            board.cancel.remote()  # the workers drop their unfinished files, and the pump ends
            deadline = time.monotonic() + CANCEL_TIMEOUT
            while time.monotonic() < deadline:
                try:
                    kind, item = results.get(timeout=POLL_INTERVAL)
                except queue.Empty:
                    if not pump.is_alive():
                        break
                    continue
                if kind != "row":
                    break
                _record(item, pending, manifest, summary)  # finished meanwhile: kept
            raise
        pump.join()
    if pending:  # the dataset ended without some shards: a bug, never a silent success
        raise ElmoError(f"the Ray job ended without results for {', '.join(sorted(pending))}")


def _pump(dataset: Any, results: queue.Queue[tuple[str, Any]]) -> None:
    """Move the dataset's rows (one per shard, as they finish) to ``results``; then ``end`` or ``error``.

    Without prefetching: ``iter_rows`` (prefetching one block) held a finished shard's row back until
    the next shard finished, so the manifest lagged behind the files, and an interrupt lost entries.
    """
    try:
        for batch in dataset.iter_batches(batch_size=None, prefetch_batches=0, batch_format="numpy"):
            columns = list(batch)
            for values in zip(*(batch[name].tolist() for name in columns), strict=True):  # as Python values
                results.put(("row", dict(zip(columns, values, strict=True))))
    except BaseException as error:
        results.put(("error", error))
    else:
        results.put(("end", None))


def _record(row: dict[str, Any], pending: dict[str, ShardEntry], manifest: Manifest, summary: CorpusSummary) -> None:
    """Write one worker result into the manifest (atomically, at once)."""
    entry = pending.pop(row["shard"])
    entry.attempts = int(row["attempts"])
    if row["status"] == CANCELLED:
        return  # stays pending
    entry.finished_at = _now()
    if row["status"] == OK:
        entry.status, entry.error = COMPLETE, None
        entry.tokens = int(row["tokens"])
        entry.output_sha256 = str(row["output_sha256"])
        entry.datasets = expected_datasets(
            entry.lines, entry.flags["use_sentence_keys"], entry.flags["forget_sentences"]
        )
        summary.embedded.append(entry.output)
        summary.sentences += int(row["sentences"])
        summary.tokens += entry.tokens
    else:
        entry.status, entry.error = FAILED, str(row["error"])
        summary.failed[entry.output] = entry.error
    manifest.save()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


__all__ = ["CorpusSummary", "ShardsFailed", "embed_corpus"]
