"""Flair-level overhead: ``ELMoEmbeddings.embed`` on Flair sentences against raw ``ElmoEmbedder``.

Both embed the same Brown sentences, batch 32, all layers (``embedding_type="all"``):

- raw: ``ElmoEmbedder.embed_batch(token_lists)`` -> numpy arrays;
- Flair: ``ELMoEmbeddings.embed(sentences)`` -> a vector on every ``Token``; the sentences are
  built (and their embeddings cleared) outside the timed region.

Overhead = Flair time / raw time - 1, from the medians of interleaved passes.

Examples:
    python benchmarks/bench_flair.py
    python benchmarks/bench_flair.py --configs small --passes 5

Writes ``flair_overhead.json`` and ``flair_overhead.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import flair
import torch
from _common import (
    DEFAULT_CACHE,
    RESULTS,
    batches,
    load_average,
    log,
    machine_info,
    markdown_table,
    medians,
    model_files,
    publish,
    time_sides,
)
from corpora import brown_directory, sample_sentences
from flair.data import Sentence

from flair_elmo_modes import ElmoEmbedder, ELMoEmbeddings


def bench(name: str, args: argparse.Namespace, token_lists: list[list[str]]) -> dict[str, Any]:
    options_file, weight_file = model_files(name, args.cache_dir)
    raw = ElmoEmbedder(options_file, weight_file)
    embeddings = ELMoEmbeddings(options_file=options_file, weight_file=weight_file, embedding_type="all")
    batch_list = batches(token_lists, 32)
    sentence_batches = [[Sentence(tokens) for tokens in batch] for batch in batch_list]
    n_tokens = sum(len(tokens) for tokens in token_lists)

    def run_raw() -> None:
        for batch in batch_list:
            raw.embed_batch(batch)

    def run_flair() -> None:
        for batch in sentence_batches:
            embeddings.embed(batch)

    def clear() -> None:
        for batch in sentence_batches:
            for sentence in batch:
                sentence.clear_embeddings()

    def run_flair_fresh() -> float:
        """A pass on sentences without embeddings (cleared before the clock starts): its seconds."""
        clear()
        start = time.perf_counter()
        run_flair()
        return time.perf_counter() - start

    times = time_sides({"raw": run_raw, "flair": run_flair_fresh}, args.passes)
    # same vectors: the last sentence's tokens, all layers concatenated
    sentence = sentence_batches[-1][-1]
    embeddings.embed(sentence_batches[-1])
    expected = torch.from_numpy(raw.embed_batch(batch_list[-1])[-1])  # (layers, tokens, dim)
    flair_vectors = torch.stack([token.get_embedding() for token in sentence]).cpu()
    diff = float((flair_vectors - expected.permute(1, 0, 2).reshape(len(sentence), -1)).abs().max())
    median = medians(times)
    raw_median, flair_median = median["raw"], median["flair"]
    return {
        "config": name,
        "tokens": n_tokens,
        "raw_tokens_per_s": n_tokens / raw_median,
        "flair_tokens_per_s": n_tokens / flair_median,
        "overhead": flair_median / raw_median - 1,
        "max_abs_diff": diff,
        "raw_seconds": times["raw"],
        "flair_seconds": times["flair"],
        "flair_device": str(flair.device),
    }


def report(results: dict[str, Any]) -> str:
    return "Batch 32 of Brown sentences, `embedding_type='all'`.\n\n" + markdown_table(
        ["config", "tokens", "ElmoEmbedder tokens/s", "ELMoEmbeddings tokens/s", "overhead", "max abs diff"],
        [
            [
                r["config"],
                r["tokens"],
                f"{r['raw_tokens_per_s']:.0f}",
                f"{r['flair_tokens_per_s']:.0f}",
                f"{100 * r['overhead']:+.1f}%",
                f"{r['max_abs_diff']:.1e}",
            ]
            for r in results["configs"]
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="small,original")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=0, help="batches of 32 per pass (default 16 small, 6 original)")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    flair.device = torch.device("cpu")
    sentences = sample_sentences(4096, brown_directory(args.cache_dir))
    results: dict[str, Any] = {"machine": machine_info(), "configs": []}
    for name in args.configs.split(","):
        n_batches = args.batches or {"small": 16, "original": 6}.get(name, 6)
        log(f"{name}: load {load_average()}")
        results["configs"].append(bench(name, args, sentences[: 32 * n_batches]))
    publish(args.out, "flair_overhead", results, report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
