"""What each shortcut of the biLM gives: end-to-end ``embed_batch`` with one shortcut off at a time.

The LSTM kernels (every one forced, the plain ``bmm`` steps, bf16) are timed per shape by
``bench_shapes.py``'s grid; this script times the switches that grid leaves on. Every variant
computes the same values up to float32 rounding (the fast-path tests check it); only the time
changes. Each is one setting of the public switch ``fast_paths(...)`` or of the documented class
attribute ``BidirectionalLstm.input_projection_rows``, on batches of 32 natural Brown sentences,
all variants interleaved round by round (``_common.time_sides``):

- ``defaults``;
- ``distinct_tokens=False``: the character encoder encodes every position (padding included), not
  each distinct token of the batch once;
- ``trimmed_windows=False``: every convolution window of every token, not only those touching a real
  character;
- both of them: the character encoder as AllenNLP runs it;
- ``in_place=False``: LSTM steps out of place (new tensors every step, as autograd needs);
- ``input_projection_rows = 1``: one input-projection product per time step instead of one per
  block of packed rows;
- ``planned=False``: the fixed kernel rule instead of the kernel plan measured on this machine;
- ``batch_invariant=True``: every product through oneDNN (bitwise batch independence; a mode, not
  a shortcut);
- ``enabled=False``: every shortcut off, the plain torch computation.

Then, with the defaults: the share of a pass spent in the character encoder, the LSTM and the rest
(ids, glue, numpy); the optional char-CNN token cache (``ElmoEmbedder.cache_tokens`` with the most
frequent Brown words) against none; and length-aware batching (``embed_sentences(...,
sort_batches=N)``) against batches in the order the sentences come.

Examples:
    python benchmarks/bench_ablation.py --configs en-tiny,small
    python benchmarks/bench_ablation.py --configs small --batches 2 --rounds 1 --cache-words 100 --out DIR  # smoke

Writes ``<name>.json`` and ``<name>.md`` (``--name``, default ``ablation``) to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    DEFAULT_CACHE,
    RESULTS,
    Others,
    batches,
    embed_all,
    log,
    machine_info,
    markdown_table,
    max_abs_diff,
    medians,
    model_files,
    publish,
    time_sides,
)
from corpora import brown_directory, brown_sentences, sample_sentences

from flair_elmo_modes import ElmoEmbedder
from flair_elmo_modes.bilm.fast.fast_paths import fast_paths


@dataclass(frozen=True)
class Variant:
    """One setting of the shortcuts: a row of the table.

    Attributes:
        label: what changes, in words.
        switches: fields of ``FastPaths`` to change.
        input_projection_rows: ``BidirectionalLstm.input_projection_rows`` if not the default.
    """

    label: str
    switches: Mapping[str, bool] = field(default_factory=dict)
    input_projection_rows: int | None = None

    def setting(self) -> str:
        settings = [f"{key}={value}" for key, value in self.switches.items()]
        if self.input_projection_rows is not None:
            settings.append(f"input_projection_rows={self.input_projection_rows}")
        return ", ".join(settings) or "defaults"


VARIANTS = (
    Variant("defaults"),
    Variant("every position encoded, not each distinct token once", {"distinct_tokens": False}),
    Variant("every convolution window, not only those touching real characters", {"trimmed_windows": False}),
    Variant("both: the character encoder as AllenNLP runs it", {"distinct_tokens": False, "trimmed_windows": False}),
    Variant("LSTM steps out of place", {"in_place": False}),
    Variant("input projections one time step at a time", input_projection_rows=1),
    Variant("the fixed kernel rule instead of the measured plan", {"planned": False}),
    Variant("batch-invariant mode (every product through oneDNN)", {"batch_invariant": True}),
    Variant("every shortcut off: the plain computation", {"enabled": False}),
)


def variants(name: str, args: argparse.Namespace, batch_list: list[Any], n_tokens: int) -> list[dict[str, Any]]:
    options_file, weight_file = model_files(name, args.cache_dir)
    shared = ElmoEmbedder(options_file, weight_file)  # the switches apply per call: one model serves them all
    outputs: dict[str, list[np.ndarray]] = {}

    def side(variant: Variant) -> Callable[[], None]:
        embedder = shared
        if variant.input_projection_rows is not None:
            embedder = ElmoEmbedder(options_file, weight_file)
            embedder.bilm.lstm.input_projection_rows = variant.input_projection_rows

        def run() -> None:
            with fast_paths(**variant.switches):
                outputs[variant.label] = embed_all(embedder, batch_list)

        return run

    with Others() as others:
        seconds = medians(time_sides({variant.label: side(variant) for variant in VARIANTS}, args.rounds))
    rows = []
    for variant in VARIANTS:
        rows.append(
            {
                "config": name,
                "variant": variant.label,
                "setting": variant.setting(),
                "tokens_per_s": n_tokens / seconds[variant.label],
                "time_vs_defaults": seconds[variant.label] / seconds["defaults"],
                "max_abs_diff_vs_defaults": max_abs_diff(outputs[variant.label], outputs["defaults"]),
                "other_cores": others.cores,
            }
        )
        log(f"{name} {variant.setting()}: {rows[-1]['tokens_per_s']:.0f} tokens/s")
    return rows


def shares(name: str, args: argparse.Namespace, batch_list: list[Any]) -> dict[str, Any]:
    """Seconds per pass in the character encoder, the LSTM and everything else (median pass)."""
    options_file, weight_file = model_files(name, args.cache_dir)
    embedder = ElmoEmbedder(options_file, weight_file)
    spent = {"char_encoder": 0.0, "lstm": 0.0}
    started: dict[str, float] = {}
    for part in spent:

        def before(module: torch.nn.Module, inputs: Any, part: str = part) -> None:
            started[part] = time.perf_counter()

        def after(module: torch.nn.Module, inputs: Any, output: Any, part: str = part) -> None:
            spent[part] += time.perf_counter() - started[part]

        getattr(embedder.bilm, part).register_forward_pre_hook(before)
        getattr(embedder.bilm, part).register_forward_hook(after)
    embed_all(embedder, batch_list[:2])
    passes = []
    for _ in range(args.rounds):
        spent.update(char_encoder=0.0, lstm=0.0)
        start = time.perf_counter()
        embed_all(embedder, batch_list)
        passes.append((time.perf_counter() - start, spent["char_encoder"], spent["lstm"]))
    total, encoder, lstm = sorted(passes)[len(passes) // 2]
    return {
        "config": name,
        "total_s": total,
        "char_encoder_s": encoder,
        "lstm_s": lstm,
        "rest_s": total - encoder - lstm,
    }


def token_cache(name: str, args: argparse.Namespace, batch_list: list[Any], n_tokens: int) -> list[dict[str, Any]]:
    """``ElmoEmbedder.cache_tokens`` with the most frequent Brown words, against no cache."""
    options_file, weight_file = model_files(name, args.cache_dir)
    counts = Counter(token for sentence in brown_sentences(brown_directory(args.cache_dir)) for token in sentence)
    embedders: dict[str, ElmoEmbedder] = {}
    cached: dict[str, int] = {}
    fill_seconds: dict[str, float] = {}
    for size in (0, *args.cache_words):
        embedder = ElmoEmbedder(options_file, weight_file)
        label = f"top {size} words" if size else "no cache"
        if size:
            cached[label] = embedder.cache_tokens(word for word, _ in counts.most_common(size))
            start = time.perf_counter()
            embedder.embed_batch([["fill"]])  # the cache encodes its vocabulary on first use
            fill_seconds[label] = time.perf_counter() - start
        embedders[label] = embedder

    def side(embedder: ElmoEmbedder) -> Callable[[], None]:
        return lambda: embed_all(embedder, batch_list)

    seconds = medians(time_sides({label: side(embedder) for label, embedder in embedders.items()}, args.rounds))
    rows = []
    for label, embedder in embedders.items():
        cache = embedder.bilm.char_encoder.token_cache
        rows.append(
            {
                "config": name,
                "cache": label,
                "tokens_per_s": n_tokens / seconds[label],
                "speedup": seconds["no cache"] / seconds[label],
                # over every pass, warm-up included: each pass looks up the same distinct tokens
                "distinct_token_hit_rate": cache.hits / max(1, cache.hits + cache.misses) if cache else None,
                "fill_seconds": fill_seconds.get(label),
                "cached_tokens": cached.get(label, 0),
                # one float32 vector of projection_dim per cached token
                "cache_mb": cached.get(label, 0) * embedder.bilm.options.projection_dim * 4 / 2**20,
            }
        )
    return rows


def length_aware(
    name: str, args: argparse.Namespace, sentences: list[list[str]], n_tokens: int
) -> list[dict[str, Any]]:
    options_file, weight_file = model_files(name, args.cache_dir)
    embedder = ElmoEmbedder(options_file, weight_file)

    def side(n: int) -> Callable[[], None]:
        return lambda: list(embedder.embed_sentences(sentences, batch_size=32, sort_batches=n))

    seconds = medians(time_sides({f"sort_batches={n}": side(n) for n in (1, 8, 32)}, args.rounds))
    return [
        {
            "config": name,
            "batching": label,
            "tokens_per_s": n_tokens / t,
            "speedup": seconds["sort_batches=1"] / t,
        }
        for label, t in seconds.items()
    ]


def report(results: dict[str, Any]) -> str:
    settings = results["settings"]
    parts = [
        f"Batches of 32 natural Brown sentences ({settings['sentences']} per pass, random.Random(0)), "
        f"{settings['rounds']} interleaved rounds after a warm-up, median. Others: the cores other processes "
        "used meanwhile, on average.",
        markdown_table(
            ["config", "variant", "setting", "tokens/s", "time vs defaults", "max abs diff vs defaults", "others"],
            [
                [
                    r["config"],
                    r["variant"],
                    f"`{r['setting']}`",
                    f"{r['tokens_per_s']:.0f}",
                    f"{r['time_vs_defaults']:.2f}",
                    f"{r['max_abs_diff_vs_defaults']:.1e}",
                    "" if r["other_cores"] is None else f"{r['other_cores']:.1f}",
                ]
                for r in results["variants"]
            ],
        ),
    ]
    if results["shares"]:
        parts.append(
            markdown_table(
                ["config", "pass s", "char encoder", "LSTM", "rest (ids, glue, numpy)"],
                [
                    [
                        r["config"],
                        f"{r['total_s']:.3f}",
                        f"{100 * r['char_encoder_s'] / r['total_s']:.0f}%",
                        f"{100 * r['lstm_s'] / r['total_s']:.0f}%",
                        f"{100 * r['rest_s'] / r['total_s']:.0f}%",
                    ]
                    for r in results["shares"]
                ],
            )
        )
    if results["token_cache"]:
        parts.append(
            markdown_table(
                [
                    "config",
                    "char-CNN token cache",
                    "tokens/s",
                    "speedup",
                    "hit rate (distinct tokens)",
                    "fill s",
                    "MiB",
                ],
                [
                    [
                        r["config"],
                        r["cache"],
                        f"{r['tokens_per_s']:.0f}",
                        f"{r['speedup']:.2f}x",
                        "" if r["distinct_token_hit_rate"] is None else f"{100 * r['distinct_token_hit_rate']:.0f}%",
                        "" if r["fill_seconds"] is None else f"{r['fill_seconds']:.1f}",
                        f"{r['cache_mb']:.1f}",
                    ]
                    for r in results["token_cache"]
                ],
            )
        )
    if results["length_aware"]:
        parts.append(
            markdown_table(
                ["config", "embed_sentences, batch 32", "tokens/s", "speedup"],
                [
                    [r["config"], f"`{r['batching']}`", f"{r['tokens_per_s']:.0f}", f"{r['speedup']:.2f}x"]
                    for r in results["length_aware"]
                ],
            )
        )
    return "\n\n".join(parts)


def positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected numbers >= 1, got {text!r}")
    return values


PARTS = ("variants", "shares", "token_cache", "length_aware")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="en-tiny,small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=8, help="batches of 32 per pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cache-words", type=positive_ints, default=(10_000, 50_000), help="token cache sizes (default 10000,50000)"
    )
    parser.add_argument("--only", default=",".join(PARTS), help=f"some of {', '.join(PARTS)}")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="weights, Brown")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="ablation", help="the results' file name, without suffix")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    only = set(args.only.split(","))
    sentences = sample_sentences(4096, brown_directory(args.cache_dir))[: 32 * args.batches]
    batch_list = batches(sentences, 32)
    n_tokens = sum(len(s) for s in sentences)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {"sentences": len(sentences), "tokens": n_tokens, "rounds": args.rounds},
        **{part: [] for part in PARTS},
    }
    for name in args.configs.split(","):
        log(f"{name}: {n_tokens} tokens per pass")
        if "variants" in only:
            results["variants"] += variants(name, args, batch_list, n_tokens)
        if "shares" in only:
            results["shares"].append(shares(name, args, batch_list))
        if "token_cache" in only:
            results["token_cache"] += token_cache(name, args, batch_list, n_tokens)
        if "length_aware" in only:
            results["length_aware"] += length_aware(name, args, sentences, n_tokens)
    publish(args.out, args.name, results, report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
