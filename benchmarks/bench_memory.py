"""Peak memory of long inputs: one long document, and a long stream through ``embed_sentences``.

Each scenario runs in a fresh Python process, so its peak resident set size (``ru_maxrss``) is its
own. Scenarios:

- ``document``: one "sentence" of N tokens (running Brown text) through ``embed_sentence``. The
  result itself is ``(n_layers + 1) * N * 2 * projection_dim`` float32; the table shows the peak
  RSS above the loaded model next to that size. With allennlp importable, AllenNLP's
  ``_ElmoBiLm`` runs the same document for comparison.
- ``stream``: a generator of N Brown sentences (cycled) through ``embed_sentences`` with batch
  32, every array dropped after a checksum; the current RSS is sampled along the way. Flat means
  the RSS of the last half of the stream does not grow beyond the first tenth.

Models: ``_common.model_files`` (the published shapes with random weights, or the shipped
``en-tiny``).

Examples:
    PYTHONPATH=. ORACLE/bin/python benchmarks/bench_memory.py   # with AllenNLP: the oracle venv (README.md)
    python benchmarks/bench_memory.py --configs small --stream en-tiny:1000000

Writes ``<name>.json`` and ``<name>.md`` (``--name``, default ``memory``) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import torch
from _common import (
    DEFAULT_CACHE,
    RESULTS,
    RssSampler,
    current_rss_mb,
    load_average,
    log,
    machine_info,
    markdown_table,
    model_files,
    peak_rss_mb,
    publish,
)
from corpora import brown_directory, brown_sentences

from flair_elmo_modes import ElmoEmbedder


def document(config: str, n_tokens: int, side: str, cache_dir: Path) -> dict[str, Any]:
    options_file, weight_file = model_files(config, cache_dir)
    tokens = list(islice((t for s in brown_sentences(brown_directory(cache_dir)) for t in s), n_tokens))
    if side == "allennlp":
        from allennlp_side import AllenNlpEmbedder

        embed = AllenNlpEmbedder(options_file, weight_file).embed_batch
    else:
        embed = ElmoEmbedder(options_file, weight_file).embed_batch
    embed([tokens[:20]])  # warm-up: allocator pools of a normal sentence
    with RssSampler() as sampler:
        start = time.perf_counter()
        (array,) = embed([tokens])
        seconds = time.perf_counter() - start
    return {
        "scenario": "document",
        "config": config,
        "side": side,
        "tokens": n_tokens,
        "seconds": seconds,
        "output_mb": array.nbytes / 2**20,
        "rss_before_mb": sampler.start,
        "rss_peak_during_mb": sampler.peak,
        "process_peak_rss_mb": peak_rss_mb(),  # includes loading the weights
    }


def stream(config: str, n_sentences: int, samples: int, cache_dir: Path) -> dict[str, Any]:
    options_file, weight_file = model_files(config, cache_dir)
    embedder = ElmoEmbedder(options_file, weight_file)
    corpus = brown_sentences(brown_directory(cache_dir))

    def sentences() -> Iterator[list[str]]:
        yield from islice(cycle(corpus), n_sentences)

    every = max(1, n_sentences // samples)
    trace: list[tuple[int, float]] = []
    checksum, n_tokens = 0.0, 0
    start = time.perf_counter()
    for i, array in enumerate(embedder.embed_sentences(sentences(), batch_size=32), start=1):
        checksum += float(array[-1, :, 0].sum()) if array.size else 0.0
        n_tokens += array.shape[1]
        if i % every == 0 or i == n_sentences:
            trace.append((i, round(current_rss_mb(), 1)))
    seconds = time.perf_counter() - start
    tenth = [rss for i, rss in trace if i <= n_sentences // 10]
    last_half = [rss for i, rss in trace if i > n_sentences // 2]
    return {
        "scenario": "stream",
        "config": config,
        "sentences": n_sentences,
        "tokens": n_tokens,
        "seconds": seconds,
        "sentences_per_s": n_sentences / seconds,
        "rss_first_tenth_max_mb": max(tenth) if tenth else None,
        "rss_last_half_max_mb": max(last_half) if last_half else None,
        "growth_mb": (max(last_half) - max(tenth)) if tenth and last_half else None,
        "peak_rss_mb": peak_rss_mb(),
        "trace": trace,
        "checksum": checksum,
    }


def child(spec: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run one scenario in a fresh process and return its JSON result."""
    command = [sys.executable, "-W", "ignore", __file__, "--child", json.dumps(spec), "--threads", str(threads)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: dict[str, Any]) -> str:
    documents = streams = ""
    if results["documents"]:
        documents = markdown_table(
            [
                "config",
                "implementation",
                "document tokens",
                "seconds",
                "output MiB",
                "RSS before MiB",
                "peak RSS during",
                "peak - before",
            ],
            [
                [
                    r["config"],
                    "flair-elmo-modes" if r["side"] == "ours" else "AllenNLP 2.10.1",
                    r["tokens"],
                    f"{r['seconds']:.1f}",
                    f"{r['output_mb']:.0f}",
                    f"{r['rss_before_mb']:.0f}",
                    f"{r['rss_peak_during_mb']:.0f}",
                    f"{r['rss_peak_during_mb'] - r['rss_before_mb']:.0f}",
                ]
                for r in results["documents"]
            ],
        )
    if results["streams"]:
        streams = markdown_table(
            [
                "config",
                "sentences",
                "tokens",
                "sentences/s",
                "RSS max, first 10%",
                "RSS max, last 50%",
                "growth MiB",
                "peak RSS",
            ],
            [
                [
                    r["config"],
                    r["sentences"],
                    r["tokens"],
                    f"{r['sentences_per_s']:.0f}",
                    f"{r['rss_first_tenth_max_mb']:.0f}",
                    f"{r['rss_last_half_max_mb']:.0f}",
                    f"{r['growth_mb']:+.1f}",
                    f"{r['peak_rss_mb']:.0f}",
                ]
                for r in results["streams"]
            ],
        )
    return "\n\n".join(table for table in (documents, streams) if table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="small,original", help="configurations of the document scenario")
    parser.add_argument("--document-tokens", default="1000,10000")
    parser.add_argument("--no-allennlp", action="store_true")
    parser.add_argument(
        "--allennlp-configs", default="small", help="configs whose documents AllenNLP also embeds (slow for 'original')"
    )
    parser.add_argument("--stream", default="small:30000,en-tiny:300000", help="config:sentences,...")
    parser.add_argument("--samples", type=int, default=50, help="RSS samples along a stream")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="memory", help="the results' file name, without suffix")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        spec = json.loads(args.child)
        if spec["scenario"] == "document":
            result = document(spec["config"], spec["tokens"], spec["side"], args.cache_dir)
        else:
            result = stream(spec["config"], spec["sentences"], args.samples, args.cache_dir)
        print(json.dumps(result))
        return 0
    try:
        import allennlp_side  # noqa: F401

        sides = ["ours"] if args.no_allennlp else ["ours", "allennlp"]
    except ImportError:
        sides = ["ours"]
    results: dict[str, Any] = {"machine": machine_info(), "documents": [], "streams": []}
    for config in filter(None, args.configs.split(",")):
        model_files(config, args.cache_dir)  # written here, not inside a measured child
        for n_tokens in (int(x) for x in args.document_tokens.split(",")):
            for side in sides:
                if side == "allennlp" and config not in args.allennlp_configs.split(","):
                    continue
                log(f"document {config} {n_tokens} tokens, {side}; load {load_average()}")
                results["documents"].append(
                    child({"scenario": "document", "config": config, "tokens": n_tokens, "side": side}, args.threads)
                )
    for item in filter(None, args.stream.split(",")):
        config, count = item.split(":")
        model_files(config, args.cache_dir)
        log(f"stream {config} {count} sentences; load {load_average()}")
        results["streams"].append(
            child({"scenario": "stream", "config": config, "sentences": int(count)}, args.threads)
        )
    publish(args.out, args.name, results, report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
