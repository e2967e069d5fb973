"""Tokens/s of ``flair-elmo embed-corpus`` on a local Ray cluster vs single-process ``flair-elmo embed``.

The same shards (``--shards`` files of ``--sentences`` Brown sentences each) are embedded by
``flair-elmo embed`` shard after shard in this process, with 1 and with all torch threads; by as
many fresh ``flair-elmo embed`` processes at once as there are CPUs (each on its share of the
shards, 1 thread: what the machine gives independent processes, their start included); and by
``embed_corpus`` in three layouts: 1 worker of CPUs - 1 (a CPU left to Ray's own processes: the
driver's streaming executor, its stats and autoscaling actors, the raylet), 1 worker of every CPU,
and one worker per CPU. The Ray cluster is started once beforehand (its start is reported, not
timed in the jobs). Every run is timed end to end (for the jobs: planning, actor start with the
model load, embedding, manifest); median of ``--repeats``. A job on a one-sentence corpus gives
the fixed cost of a job (mostly starting Ray Data's actors and ours: fresh Pythons, torch in
ours), reported on its own.

Overhead per worker, for k workers of c CPUs each, against ``flair-elmo embed`` on c threads:
``1 - job tokens/s / (k * embed tokens/s)``; "steady" uses the job's time less the fixed cost.
For k > 1 also against the k processes at once.

Examples:
    python benchmarks/bench_corpus.py
    python benchmarks/bench_corpus.py --sentences 500 --repeats 1

Writes ``corpus.json`` and ``corpus.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import corpora
import torch
from _common import DEFAULT_CACHE, REPO, RESULTS, log, machine_info, markdown_table, publish

from flair_elmo_modes.cli import main as flair_elmo
from flair_elmo_modes.corpus import EmbedSettings, embed_corpus
from flair_elmo_modes.models import SHIPPED_MODEL


def write_shards(directory: Path, sentences: list[list[str]], shards: int, per_shard: int) -> tuple[list[Path], int]:
    """``shards`` files of ``per_shard`` consecutive Brown sentences; the paths and the number of tokens."""
    directory.mkdir(parents=True)
    paths, tokens = [], 0
    for i in range(shards):
        part = sentences[i * per_shard : (i + 1) * per_shard]
        tokens += sum(len(sentence) for sentence in part)
        path = directory / f"brown-{i:02d}.txt"
        path.write_text("".join(" ".join(sentence) + "\n" for sentence in part), encoding="utf-8")
        paths.append(path)
    return paths, tokens


def time_single(shards: list[Path], out: Path, threads: int) -> float:
    """Seconds of ``flair-elmo embed`` on every shard in turn, on ``threads`` torch threads."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    for shard in shards:
        assert (
            flair_elmo(["embed", str(shard), str(out / f"{shard.stem}.hdf5"), "--model", SHIPPED_MODEL, "--quiet"]) == 0
        )
    return time.perf_counter() - start


EMBED_IN_TURN = """
import sys, torch
from flair_elmo_modes.cli import main
torch.set_num_threads(int(sys.argv[1]))
for shard, output in zip(sys.argv[2::2], sys.argv[3::2]):
    assert main(["embed", shard, output, "--model", "en-tiny", "--quiet"]) == 0
"""


def time_processes(shards: list[Path], out: Path, processes: int, threads: int) -> float:
    """Seconds of ``processes`` fresh Python processes running at once, each ``flair-elmo embed`` on
    every ``processes``-th shard in turn: what the machine gives independent processes, start included."""
    start = time.perf_counter()
    running = []
    for k in range(processes):
        pairs = [str(part) for shard in shards[k::processes] for part in (shard, out / f"{shard.stem}.hdf5")]
        running.append(subprocess.Popen([sys.executable, "-c", EMBED_IN_TURN, str(threads), *pairs], cwd=REPO))
    assert all(process.wait() == 0 for process in running)
    return time.perf_counter() - start


def time_job(inputs: list[Path], out: Path, workers: int, cpus_per_worker: int) -> float:
    """Seconds of one ``embed_corpus`` job into the empty directory ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    summary = embed_corpus(
        inputs, out, EmbedSettings(model=SHIPPED_MODEL), workers=workers, cpus_per_worker=cpus_per_worker,
        progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert not summary.failed and not summary.skipped
    return seconds


def layouts(cpus: int) -> list[tuple[int, int]]:
    """(workers, CPUs per worker): one worker that leaves Ray a CPU, one with every CPU, one per CPU."""
    return list(dict.fromkeys([(1, max(1, cpus - 1)), (1, cpus), (cpus, 1)]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--sentences", type=int, default=2500, help="Brown sentences per shard (default 2500)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import ray

    cpus = os.cpu_count() or 1
    machine = machine_info()
    sentences = corpora.brown_sentences(corpora.brown_directory(args.cache_dir))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shards, tokens = write_shards(root / "corpus", sentences, args.shards, args.sentences)
        (root / "single").mkdir()
        (root / "one.txt").write_text(" ".join(sentences[0]) + "\n", encoding="utf-8")
        start = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        cluster_start = time.perf_counter() - start
        runs: dict[str, list[float]] = {}
        plans = [("embed", 1, threads) for threads in sorted({1, cpus})] + [("processes", cpus, 1)]
        plans += [(kind, workers, per_worker) for workers, per_worker in layouts(cpus) for kind in ("job", "fixed")]
        for repeat in range(args.repeats):
            for kind, count, threads in plans:
                name = f"{kind}-{count}x{threads}"
                log(f"repeat {repeat + 1}/{args.repeats}: {name}")
                if kind == "embed":
                    seconds = time_single(shards, root / "single", threads)
                elif kind == "processes":
                    seconds = time_processes(shards, root / "single", count, threads)
                else:
                    inputs = shards if kind == "job" else [root / "one.txt"]
                    seconds = time_job(inputs, root / name, count, threads)
                runs.setdefault(name, []).append(seconds)
        ray.shutdown()
    torch.set_num_threads(cpus)
    median = {name: statistics.median(times) for name, times in runs.items()}

    def rate(seconds: float) -> float:
        return tokens / seconds

    rows, results = [], []
    for workers, per_worker in layouts(cpus):
        job, fixed = median[f"job-{workers}x{per_worker}"], median[f"fixed-{workers}x{per_worker}"]
        single = median[f"embed-1x{per_worker}"]
        overhead = 1 - rate(job) / (workers * rate(single))
        steady = 1 - rate(job - fixed) / (workers * rate(single))
        result = {
            "workers": workers,
            "cpus_per_worker": per_worker,
            "cpus_left_to_ray": cpus - workers * per_worker,
            "job_seconds": job,
            "job_tokens_per_s": rate(job),
            "fixed_job_seconds": fixed,
            "single_threads": per_worker,
            "single_tokens_per_s": rate(single),
            "overhead_per_worker": overhead,
            "steady_overhead_per_worker": steady,
        }
        processes = median.get(f"processes-{workers}x{per_worker}") if workers > 1 else None
        if processes is not None:
            result["processes_tokens_per_s"] = rate(processes)
            result["overhead_vs_processes"] = 1 - rate(job) / rate(processes)
        results.append(result)
        rows.append(
            [
                f"{workers} x {per_worker} CPU ({cpus - workers * per_worker} left to Ray)",
                f"{rate(job):,.0f}",
                f"{workers} x {rate(single):,.0f} ({per_worker} thread{'s' if per_worker > 1 else ''})",
                f"{100 * overhead:.0f}%",
                f"{fixed:.1f} s",
                f"{100 * steady:.0f}%",
                "" if processes is None else f"{rate(processes):,.0f} ({100 * result['overhead_vs_processes']:.0f}%)",
            ]
        )
    singles = [[f"{threads} thread(s)", f"{rate(median[f'embed-1x{threads}']):,.0f}"] for threads in sorted({1, cpus})]
    markdown = "\n\n".join(
        [
            f"`flair-elmo embed-corpus` (Ray Data, local cluster of {cpus} CPUs) vs `flair-elmo embed`, en-tiny, "
            f"{args.shards} shards x {args.sentences} Brown sentences ({tokens:,} tokens), median of {args.repeats}; "
            f"cluster start {cluster_start:.1f} s (not in the jobs)",
            markdown_table(
                [
                    "workers",
                    "job tokens/s",
                    "k x embed tokens/s (same threads, one process)",
                    "overhead per worker",
                    "fixed job cost",
                    "steady overhead",
                    "k embed processes at once (job's overhead vs them)",
                ],
                rows,
            ),
            markdown_table(["flair-elmo embed, shard after shard", "tokens/s"], singles),
        ]
    )
    publish(
        args.out,
        "corpus",
        {
            "model": SHIPPED_MODEL,
            "shards": args.shards,
            "sentences_per_shard": args.sentences,
            "tokens": tokens,
            "repeats": args.repeats,
            "cluster_start_seconds": cluster_start,
            "runs_seconds": runs,
            "results": results,
            "ray": ray.__version__,
            "machine": machine,
        },
        markdown,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
