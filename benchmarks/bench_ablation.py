"""What each optimisation of the biLM gives: end-to-end ``embed_batch`` with shortcuts turned off.

Every variant computes the same values up to float32 rounding (``tests/bilm/test_fast_paths.py``
checks the shortcuts); only the time changes. Each variant is one setting of the public switch
``flair_elmo_modes.bilm.fast_paths.fast_paths`` (or of the documented class attribute
``BidirectionalLstm.input_projection_rows``):

- ``final``: the defaults.
- ``no oneDNN`` (``onednn=False``): the LSTM steps with ``bmm``/``addmm`` (MKL) instead of
  oneDNN's pre-packed weights.
- ``out-of-place steps`` (``in_place=False``): the autograd kernel (new tensors every step) without
  autograd; it never uses oneDNN either.
- ``input projection per step`` (``input_projection_rows = 1``): one input-projection matmul per
  time step instead of one per block of 512 packed rows.
- ``no dedup`` (``distinct_tokens=False``): the char CNN, highway and projection run for every
  position of the batch (padding included), not once per distinct token.
- ``no window trimming`` (``trimmed_windows=False``): every convolution window of every token.
- ``no dedup, no trimming``: both (the char encoder as AllenNLP runs it).
- ``batch invariant`` (``batch_invariant=True``): every product through oneDNN, so that a sentence's
  vectors are bitwise the same in any batch.
- ``plain computation`` (``enabled=False``): every shortcut off, plain torch ops throughout (the
  input projections stay in blocks of 512 rows).

Then the optional char-CNN token cache (``ElmoEmbedder.cache_tokens`` with the most frequent Brown
words), the biLM alone under ``torch.inference_mode`` / ``torch.no_grad`` / autograd enabled with
frozen weights, the share of time per part of the final code, input-projection block sizes,
char-CNN groupings (``CharacterEncoder.real_slot_groups``), and length-aware batching
(``embed_sentences(..., sort_batches=N)``: sentences batched by length within windows of N
batches, order restored).

Examples:
    python benchmarks/bench_ablation.py
    python benchmarks/bench_ablation.py --configs small --passes 5
    python benchmarks/bench_ablation.py --configs small --sentences 8 --passes 1 --cache-words 100 --out DIR  # smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    DEFAULT_CACHE,
    RESULTS,
    batches,
    load_average,
    log,
    machine_info,
    markdown_table,
    model_files,
    time_passes,
    write_json,
)
from corpora import brown_directory, brown_sentences, sample_sentences

from flair_elmo_modes import ElmoEmbedder
from flair_elmo_modes.bilm import batch_to_ids, load_bilm
from flair_elmo_modes.bilm.fast_paths import fast_paths


@dataclass(frozen=True)
class Variant:
    """One setting of the shortcuts.

    Attributes:
        name: the row label.
        switches: fields of :class:`~flair_elmo_modes.bilm.fast_paths.FastPaths` to change.
        input_projection_rows: ``BidirectionalLstm.input_projection_rows`` if not the default.
    """

    name: str
    switches: Mapping[str, bool] = field(default_factory=dict)
    input_projection_rows: int | None = None

    def describe(self) -> str:
        settings = [f"{key}={value}" for key, value in self.switches.items()]
        if self.input_projection_rows is not None:
            settings.append(f"input_projection_rows={self.input_projection_rows}")
        return ", ".join(settings) or "defaults"


VARIANTS = (
    Variant("final"),
    Variant("no oneDNN", {"onednn": False}),
    Variant("out-of-place steps", {"in_place": False}),
    Variant("input projection per step", input_projection_rows=1),
    Variant("no dedup", {"distinct_tokens": False}),
    Variant("no window trimming", {"trimmed_windows": False}),
    Variant("no dedup, no trimming", {"distinct_tokens": False, "trimmed_windows": False}),
    Variant("batch invariant", {"batch_invariant": True}),
    Variant("plain computation", {"enabled": False}),
)


def embed_all(embedder: ElmoEmbedder, batch_list: Sequence[Sequence[list[str]]]) -> list[np.ndarray]:
    return [array for batch in batch_list for array in embedder.embed_batch(batch)]


def variants(name: str, args: argparse.Namespace, batch_list: list[Any], n_tokens: int) -> list[dict[str, Any]]:
    options_file, weight_file = model_files(name, args.cache_dir)
    shared = ElmoEmbedder(options_file, weight_file)  # the switches apply per call: one model serves them all
    embedders: dict[str, ElmoEmbedder] = {}
    for variant in VARIANTS:
        embedder = shared
        if variant.input_projection_rows is not None:
            embedder = ElmoEmbedder(options_file, weight_file)
            embedder.bilm.lstm.input_projection_rows = variant.input_projection_rows
        embedders[variant.name] = embedder

    def run(variant: Variant, batch_list: Sequence[Sequence[list[str]]]) -> list[np.ndarray]:
        with fast_paths(**variant.switches):
            return embed_all(embedders[variant.name], batch_list)

    for variant in VARIANTS:
        run(variant, batch_list[:2])
    times: dict[str, list[float]] = {v.name: [] for v in VARIANTS}
    diffs: dict[str, float] = {}
    reference: list[np.ndarray] = []
    for pass_index in range(args.passes):  # interleaved: a change of machine load hits every variant
        for variant in VARIANTS:
            start = time.perf_counter()
            outputs = run(variant, batch_list)
            times[variant.name].append(time.perf_counter() - start)
            if variant.name == "final":
                reference = outputs
            elif pass_index == 0:
                pairs = zip(outputs, reference, strict=True)
                diffs[variant.name] = max((float(np.abs(a - b).max()) for a, b in pairs if a.size), default=0.0)
    final_median = statistics.median(times["final"])
    rows = []
    for variant in VARIANTS:
        median = statistics.median(times[variant.name])
        rows.append(
            {
                "config": name,
                "variant": variant.name,
                "setting": variant.describe(),
                "tokens_per_s": n_tokens / median,
                "time_vs_final": median / final_median,
                "max_abs_diff_vs_final": diffs.get(variant.name, 0.0),
            }
        )
        log(f"{name} {variant.name}: {n_tokens / median:.0f} tok/s")
    return rows


def grad_modes(name: str, args: argparse.Namespace, batch_list: list[Any], n_tokens: int) -> list[dict[str, Any]]:
    options_file, weight_file = model_files(name, args.cache_dir)
    bilm = load_bilm(options_file, weight_file).eval().requires_grad_(False)
    ids = [batch_to_ids(batch) for batch in batch_list]
    modes = {
        "inference_mode": torch.inference_mode,
        "no_grad": torch.no_grad,
        "grad enabled, frozen weights": torch.enable_grad,
    }
    times: dict[str, list[float]] = {m: [] for m in modes}
    for context in modes.values():
        with context():
            bilm(ids[0])
    for _ in range(args.passes):
        for m, context in modes.items():
            start = time.perf_counter()
            with context():
                for x in ids:
                    bilm(x)
            times[m].append(time.perf_counter() - start)
    base = statistics.median(times["inference_mode"])
    return [
        {
            "config": name,
            "mode": m,
            "tokens_per_s": n_tokens / statistics.median(t),
            "time_vs_inference_mode": statistics.median(t) / base,
        }
        for m, t in times.items()
    ]


def breakdown(name: str, args: argparse.Namespace, batch_list: list[Any]) -> dict[str, float]:
    """Seconds per pass spent in the char encoder, the LSTM and everything else (ids, glue, numpy)."""
    options_file, weight_file = model_files(name, args.cache_dir)
    embedder = ElmoEmbedder(options_file, weight_file)
    spent = {"char_encoder": 0.0, "lstm": 0.0}
    started: dict[str, float] = {}
    for part in spent:
        module = getattr(embedder.bilm, part)

        def before(module: torch.nn.Module, inputs: Any, part: str = part) -> None:
            started[part] = time.perf_counter()

        def after(module: torch.nn.Module, inputs: Any, output: Any, part: str = part) -> None:
            spent[part] += time.perf_counter() - started[part]

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)
    totals = []
    embed_all(embedder, batch_list[:2])
    for _ in range(args.passes):
        spent.update(char_encoder=0.0, lstm=0.0)
        start = time.perf_counter()
        embed_all(embedder, batch_list)
        totals.append((time.perf_counter() - start, spent["char_encoder"], spent["lstm"]))
    total, encoder, lstm = sorted(totals)[len(totals) // 2]
    return {
        "config": name,
        "total_s": total,
        "char_encoder_s": encoder,
        "lstm_s": lstm,
        "rest_s": total - encoder - lstm,
    }


def block_sizes(name: str, args: argparse.Namespace, batch_list: list[Any], n_tokens: int) -> list[dict[str, Any]]:
    options_file, weight_file = model_files(name, args.cache_dir)
    embedder = ElmoEmbedder(options_file, weight_file)
    rows = []
    for rows_per_block in (64, 256, 512, 2048, 8192):
        embedder.bilm.lstm.input_projection_rows = rows_per_block
        t = time_passes(lambda: embed_all(embedder, batch_list), args.passes)
        rows.append(
            {"config": name, "input_projection_rows": rows_per_block, "tokens_per_s": n_tokens / statistics.median(t)}
        )
    groupings: dict[str, tuple[int, ...]] = {
        "one group": (),
        "(8, 12, 18, 28)": (8, 12, 18, 28),
        "(6, 8, 10, 12, 16, 20, 28)": (6, 8, 10, 12, 16, 20, 28),
        "(10, 20)": (10, 20),
    }
    embedder.bilm.lstm.input_projection_rows = 512
    for label, groups in groupings.items():
        embedder.bilm.char_encoder.real_slot_groups = groups
        t = time_passes(lambda: embed_all(embedder, batch_list), args.passes)
        rows.append({"config": name, "real_slot_groups": label, "tokens_per_s": n_tokens / statistics.median(t)})
    return rows


def length_aware(
    name: str, args: argparse.Namespace, sentences: list[list[str]], n_tokens: int
) -> list[dict[str, Any]]:
    options_file, weight_file = model_files(name, args.cache_dir)
    embedder = ElmoEmbedder(options_file, weight_file)
    runs = {
        "embed_sentences (natural order)": lambda: list(embedder.embed_sentences(sentences, batch_size=32)),
        "sort_batches=8": lambda: list(embedder.embed_sentences(sentences, batch_size=32, sort_batches=8)),
        "sort_batches=32": lambda: list(embedder.embed_sentences(sentences, batch_size=32, sort_batches=32)),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for k, run in runs.items():
        times[k] = time_passes(run, args.passes)
    base = statistics.median(times["embed_sentences (natural order)"])
    return [
        {
            "config": name,
            "batching": k,
            "tokens_per_s": n_tokens / statistics.median(t),
            "speedup": base / statistics.median(t),
        }
        for k, t in times.items()
    ]


def token_cache(name: str, args: argparse.Namespace, batch_list: list[Any], n_tokens: int) -> list[dict[str, Any]]:
    """``ElmoEmbedder.cache_tokens`` with the most frequent Brown words, against no cache."""
    options_file, weight_file = model_files(name, args.cache_dir)
    counts = Counter(token for sentence in brown_sentences(brown_directory(args.cache_dir)) for token in sentence)
    settings: dict[str, ElmoEmbedder] = {}
    cached_tokens: dict[str, int] = {}
    fills: dict[str, float] = {}
    for size in (0, *args.cache_words):
        embedder = ElmoEmbedder(options_file, weight_file)
        label = f"top {size} words" if size else "no cache"
        if size:
            cached_tokens[label] = embedder.cache_tokens(word for word, _ in counts.most_common(size))
            start = time.perf_counter()
            embedder.embed_batch([["fill"]])  # the cache encodes its vocabulary on first use
            fills[label] = time.perf_counter() - start
        settings[label] = embedder
    times: dict[str, list[float]] = {label: [] for label in settings}
    for embedder in settings.values():
        embed_all(embedder, batch_list[:2])
        cache = embedder.bilm.char_encoder.token_cache
        if cache is not None:
            cache.hits = cache.misses = 0
    for _ in range(args.passes):
        for label, embedder in settings.items():
            start = time.perf_counter()
            embed_all(embedder, batch_list)
            times[label].append(time.perf_counter() - start)
    base = statistics.median(times["no cache"])
    rows = []
    for label, embedder in settings.items():
        cache = embedder.bilm.char_encoder.token_cache
        median = statistics.median(times[label])
        projection_dim = embedder.bilm.options.projection_dim
        rows.append(
            {
                "config": name,
                "cache": label,
                "tokens_per_s": n_tokens / median,
                "speedup": base / median,
                "distinct_token_hit_rate": cache.hits / max(1, cache.hits + cache.misses) if cache else None,
                "fill_seconds": fills.get(label),
                "cached_tokens": cached_tokens.get(label, 0),
                # one float32 vector of projection_dim per cached token
                "cache_mb": cached_tokens.get(label, 0) * projection_dim * 4 / 2**20,
            }
        )
        log(f"{name} token cache {label}: {n_tokens / median:.0f} tok/s")
    return rows


def report(results: dict[str, Any]) -> str:
    info = results["machine"]
    lines = [
        f"Date {info['date']}; CPU {info['cpu_model']}, {info['torch_threads']} torch threads; torch {info['torch']}; "
        f"batch 32 of Brown sentences; load average {info['load_average_at_start']} at start, "
        f"{info['load_average_at_end']} at end.",
        "",
        markdown_table(
            ["config", "variant", "setting", "tokens/s", "time vs final", "max abs diff vs final"],
            [
                [
                    r["config"],
                    r["variant"],
                    f"`{r['setting']}`",
                    f"{r['tokens_per_s']:.0f}",
                    f"{r['time_vs_final']:.2f}",
                    f"{r['max_abs_diff_vs_final']:.1e}",
                ]
                for r in results["variants"]
            ],
        ),
        "",
        markdown_table(
            ["config", "biLM called under", "tokens/s", "time vs inference_mode"],
            [
                [r["config"], r["mode"], f"{r['tokens_per_s']:.0f}", f"{r['time_vs_inference_mode']:.2f}"]
                for r in results["grad_modes"]
            ],
        ),
        "",
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
                for r in results["breakdown"]
            ],
        ),
        "",
        markdown_table(
            ["config", "setting", "tokens/s"],
            [
                [
                    r["config"],
                    f"input_projection_rows={r['input_projection_rows']}"
                    if "input_projection_rows" in r
                    else f"real_slot_groups={r['real_slot_groups']}",
                    f"{r['tokens_per_s']:.0f}",
                ]
                for r in results["settings"]
            ],
        ),
        "",
        markdown_table(
            ["config", "char CNN token cache", "tokens/s", "speedup", "hit rate (distinct tokens)", "fill s", "MiB"],
            [
                [
                    r["config"],
                    r["cache"],
                    f"{r['tokens_per_s']:.0f}",
                    f"{r['speedup']:.2f}x",
                    f"{100 * r['distinct_token_hit_rate']:.0f}%" if r["distinct_token_hit_rate"] is not None else "",
                    f"{r['fill_seconds']:.1f}" if r["fill_seconds"] is not None else "",
                    f"{r['cache_mb']:.1f}",
                ]
                for r in results["token_cache"]
            ],
        ),
        "",
        markdown_table(
            ["config", "batching (batch 32)", "tokens/s", "speedup"],
            [
                [r["config"], r["batching"], f"{r['tokens_per_s']:.0f}", f"{r['speedup']:.2f}x"]
                for r in results["length_aware"]
            ],
        ),
    ]
    return "\n".join(lines) + "\n"


def positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected numbers >= 1, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="small,original")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=0, help="batches of 32 per pass (default 16 small, 6 original)")
    parser.add_argument("--sentences", type=int, default=0, help="sentences per pass, instead of --batches")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument(
        "--cache-words", type=positive_ints, default=(10_000, 50_000), help="token cache sizes (default 10000,50000)"
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"weights, Brown ({DEFAULT_CACHE})")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--only", default="variants,grad_modes,breakdown,settings,length_aware,token_cache")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    only = set(args.only.split(","))
    sentences = sample_sentences(4096, brown_directory(args.cache_dir))
    results: dict[str, Any] = {
        "machine": machine_info(),
        "variants": [],
        "grad_modes": [],
        "breakdown": [],
        "settings": [],
        "length_aware": [],
        "token_cache": [],
    }
    for name in args.configs.split(","):
        n_sentences = args.sentences or 32 * (args.batches or {"small": 16, "original": 6}.get(name, 6))
        chosen = sentences[:n_sentences]
        batch_list = batches(chosen, 32)
        n_tokens = sum(len(s) for s in chosen)
        log(f"{name}: {n_tokens} tokens per pass; load {load_average()}")
        if "variants" in only:
            results["variants"] += variants(name, args, batch_list, n_tokens)
        if "grad_modes" in only:
            results["grad_modes"] += grad_modes(name, args, batch_list, n_tokens)
        if "breakdown" in only:
            results["breakdown"].append(breakdown(name, args, batch_list))
        if "settings" in only:
            results["settings"] += block_sizes(name, args, batch_list, n_tokens)
        if "length_aware" in only:
            results["length_aware"] += length_aware(name, args, chosen, n_tokens)
        if "token_cache" in only:
            results["token_cache"] += token_cache(name, args, batch_list, n_tokens)
    results["machine"]["load_average_at_end"] = load_average()
    write_json(args.out / "ablation.json", results)
    markdown = report(results)
    (args.out / "ablation.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
