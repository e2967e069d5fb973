"""Throughput and latency of the default path: a grid of shapes against every LSTM kernel, the plain
path and bf16; and against AllenNLP 2.10.1 on natural text and long sentences.

1. Grid (``--configs``): batch 1/8/32/128 x sentence length 1/10/50/300/1,000/5,000 tokens (running
   Brown text cut to that length), end to end (``ElmoEmbedder.embed_batch``). Each cell times,
   interleaved: the default (float32, the kernel plan measured in this run, in a fresh plan
   directory); every float32 LSTM kernel forced (``fast_paths(kernel=NAME)``); the plain torch path
   (``fast_paths(onednn=False, mkl_packed=False)``: ``bmm`` steps); and ``precision="bf16"``. It
   reports default / fastest kernel (goal >= 0.9), default / plain (goal >= 1) and bf16 / default
   (tokens/s ratios). Cells above ``--max-cell-tokens`` are skipped; a cell during which other processes kept
   ``_common.SHARED_CORES`` cores busy is timed again (``--retries``). Batch 1 is the latency: a
   sentence of N tokens takes N / (tokens/s) seconds.
2. GEMM peaks: a (2048 x 2048) by (2048 x 2048) product in float32 and in bf16, GFLOP/s.
3. Against AllenNLP 2.10.1 (when importable: run in the oracle venv, ``PYTHONPATH=.``): batch 1 on
   natural Brown sentences, single sentences of 300 and 1,000 tokens, batch 32 on a sample of all
   Brown sentences and on one of sentences up to 60 tokens, batch 128. AllenNLP's side is
   ``batch_to_ids`` + ``_ElmoBiLm`` with its states reset before every batch + boundary removal +
   numpy per sentence (allennlp 0.9's ``ElmoEmbedder.embed_batch``). For each: tokens/s of ours
   (float32 default and bf16) and of AllenNLP, ours' nominal FLOP rate against the float32 GEMM
   peak (the straightforward computation's FLOPs per token, ``_common.nominal_flops``), and the
   float32 errors against a float64 evaluation of the same weights (``_common.float64_layers``).

Examples:
    python benchmarks/bench_shapes.py --configs en-tiny,small --name shapes_grid_small   # the grid
    PYTHONPATH=. ORACLE/bin/python benchmarks/bench_shapes.py --configs "" --allennlp-configs small

Writes ``<name>.json`` and ``<name>.md`` (``--name``, default ``shapes``) to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    DEFAULT_CACHE,
    RESULTS,
    SHARED_CORES,
    Others,
    batches,
    embed_all,
    float64_layers,
    gemm_rate,
    load_average,
    log,
    machine_info,
    markdown_table,
    max_abs_diff,
    mean_abs_diff,
    medians,
    model_files,
    nominal_flops,
    publish,
    running_text,
    time_sides,
)
from corpora import brown_directory, brown_sentences

from flair_elmo_modes import ElmoEmbedder
from flair_elmo_modes.bilm import lstm as lstm_module
from flair_elmo_modes.bilm.fast import kernel_plan
from flair_elmo_modes.bilm.fast.fast_paths import fast_paths
from flair_elmo_modes.bilm.fast.kernels import candidates


def kernels_of(embedder: ElmoEmbedder, batch: list[list[str]]) -> str:
    """The LSTM kernel the default path takes for ``batch`` (recorded, not changed)."""
    taken: list[str] = []
    original = lstm_module.choose_kernel

    def recording(*args: Any, **kwargs: Any) -> Any:
        kernel = original(*args, **kwargs)
        taken.append(kernel.name)
        return kernel

    lstm_module.choose_kernel = recording
    try:
        embedder.embed_batch(batch)
    finally:
        lstm_module.choose_kernel = original
    return "+".join(sorted(set(taken)))


def grid(name: str, args: argparse.Namespace, corpus: list[list[str]]) -> list[dict[str, Any]]:
    options_file, weight_file = model_files(name, args.cache_dir)
    embedder = ElmoEmbedder(options_file, weight_file)
    bf16 = ElmoEmbedder(bilm=embedder.bilm, precision="bf16")
    lstm = embedder.bilm.lstm
    kernel_names = candidates(lstm.cell_dim, lstm.projection_dim, torch.zeros(1))
    cap = args.max_cell_tokens.get(name, args.max_cell_tokens["default"])
    rows = []
    for length in args.lengths:
        for batch_size in args.batch_sizes:
            tokens = length * batch_size
            row: dict[str, Any] = {"config": name, "batch_size": batch_size, "length": length, "tokens": tokens}
            if tokens > cap:
                rows.append({**row, "skipped": f"over --max-cell-tokens {cap}"})
                continue
            batch = running_text(length, batch_size, corpus)
            sides: dict[str, Callable[[], Any]] = {
                "default": lambda batch=batch: embedder.embed_batch(batch),
                "plain": lambda batch=batch: _with(embedder, batch, onednn=False, mkl_packed=False),
                "bf16": lambda batch=batch: bf16.embed_batch(batch),
            }
            for kernel in kernel_names:
                sides[f"kernel {kernel}"] = lambda batch=batch, kernel=kernel: _with(embedder, batch, kernel=kernel)
            row["attempts"] = 0
            while row["attempts"] <= args.retries:
                row["attempts"] += 1
                with Others() as others:
                    seconds = medians(time_sides(sides, args.reps))
                row["other_cores"] = others.cores
                if others.cores is None or others.cores < SHARED_CORES:
                    break
                log(f"grid {name} batch {batch_size} length {length}: others used {others.cores} cores")
            fastest = min(kernel_names, key=lambda kernel: seconds[f"kernel {kernel}"])
            row["kernel"] = kernels_of(embedder, batch)
            row["bf16_kernel"] = kernels_of(bf16, batch)
            row["tokens_per_s"] = {side: tokens / t for side, t in seconds.items()}
            row.update(
                fastest_kernel=fastest,
                default_vs_fastest=seconds[f"kernel {fastest}"] / seconds["default"],
                default_vs_plain=seconds["plain"] / seconds["default"],
                bf16_vs_default=seconds["default"] / seconds["bf16"],
            )
            log(
                f"grid {name} batch {batch_size} length {length}: default {row['kernel']} / fastest {fastest} "
                f"{row['default_vs_fastest']:.3f}, / plain {row['default_vs_plain']:.3f}, "
                f"bf16 {row['bf16_vs_default']:.2f}x"
            )
            rows.append(row)
    return rows


def _with(embedder: ElmoEmbedder, batch: list[list[str]], **paths: Any) -> None:
    with fast_paths(**paths):
        embedder.embed_batch(batch)


def gemm_peaks() -> dict[str, float]:
    """GFLOP/s of a 2048-square product in float32 and in bf16."""
    peaks = {"fp32": gemm_rate(torch.float32) / 1e9, "bf16": gemm_rate(torch.bfloat16) / 1e9}
    log(f"GEMM 2048: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    return peaks


def _storing(
    outputs: dict[str, list[np.ndarray]], key: str, embedder: Any, batch_list: Sequence[Sequence[list[str]]]
) -> Callable[[], None]:
    """A timed side that keeps its last outputs under ``key``."""

    def run() -> None:
        outputs[key] = embed_all(embedder, batch_list)

    return run


def against_allennlp(
    name: str, args: argparse.Namespace, corpus: list[list[str]], fp32_peak: float
) -> list[dict[str, Any]]:
    from allennlp_side import AllenNlpEmbedder

    options_file, weight_file = model_files(name, args.cache_dir)
    ours = ElmoEmbedder(options_file, weight_file)
    ours_bf16 = ElmoEmbedder(bilm=ours.bilm, precision="bf16")
    theirs = AllenNlpEmbedder(options_file, weight_file)
    rng = random.Random(args.seed)
    n_all = args.batch32_sentences or {"original": 256}.get(name, 768)
    workloads = [
        ("batch 1, natural", 1, rng.sample(corpus, args.batch1_sentences)),
        ("300-token sentences, one at a time", 1, running_text(300, args.long_sentences, corpus)),
        ("1,000-token sentences, one at a time", 1, running_text(1000, args.long_sentences, corpus)),
        ("batch 32, natural (all lengths)", 32, rng.sample(corpus, n_all)),
        ("batch 32, natural (<= 60 tokens)", 32, rng.sample([s for s in corpus if len(s) <= 60], n_all)),
        ("batch 128, natural (all lengths)", 128, rng.sample(corpus, n_all)),
    ]
    rows = []
    for label, batch_size, sentences in workloads:
        batch_list = batches(sentences, batch_size)
        n_tokens = sum(len(s) for s in sentences)
        outputs: dict[str, list[np.ndarray]] = {}
        load = load_average()
        with Others() as others:
            times = time_sides(
                {
                    "ours": _storing(outputs, "ours", ours, batch_list),
                    "ours_bf16": _storing(outputs, "ours_bf16", ours_bf16, batch_list),
                    "allennlp": _storing(outputs, "theirs", theirs, batch_list),
                },
                args.allennlp_reps,
            )
        seconds = medians(times)
        reference = float64_layers(options_file, weight_file, batch_list)
        flops = nominal_flops(ours.bilm.options, [len(s) for s in sentences])["total"]
        row = {
            "config": name,
            "workload": label,
            "batch_size": batch_size,
            "sentences": len(sentences),
            "tokens": n_tokens,
            "ours_tokens_per_s": n_tokens / seconds["ours"],
            "ours_bf16_tokens_per_s": n_tokens / seconds["ours_bf16"],
            "allennlp_tokens_per_s": n_tokens / seconds["allennlp"],
            "ratio": seconds["allennlp"] / seconds["ours"],
            "bf16_ratio": seconds["allennlp"] / seconds["ours_bf16"],
            "ours_bf16_float32_error": max_abs_diff(outputs["ours_bf16"], reference),
            "ours_bf16_mean_error": mean_abs_diff(outputs["ours_bf16"], reference),
            "ours_float32_error": max_abs_diff(outputs["ours"], reference),
            "allennlp_float32_error": max_abs_diff(outputs["theirs"], reference),
            "ours_mean_error": mean_abs_diff(outputs["ours"], reference),
            "allennlp_mean_error": mean_abs_diff(outputs["theirs"], reference),
            "nominal_flops_per_token": flops,
            "ours_fraction_of_fp32_peak": n_tokens / seconds["ours"] * flops / (fp32_peak * 1e9),
            "load_average_before": load,
            "other_cores": others.cores,
        }
        row["error_ratio"] = row["ours_float32_error"] / row["allennlp_float32_error"]
        log(
            f"allennlp {name} {label}: {row['ratio']:.2f}x (bf16 {row['bf16_ratio']:.2f}x), "
            f"error ratio {row['error_ratio']:.2f}"
        )
        rows.append(row)
    return rows


def _cores(row: dict[str, Any]) -> str:
    """The cores other processes used while the row was timed (bold from SHARED_CORES on)."""
    cores = row.get("other_cores")
    if cores is None:
        return ""
    return f"**{cores:.1f}**" if cores >= SHARED_CORES else f"{cores:.1f}"


def report(results: dict[str, Any]) -> str:
    parts = []
    grid_rows = [r for r in results["grid"] if "skipped" not in r]
    if grid_rows:
        parts.append(
            markdown_table(
                [
                    "config",
                    "batch",
                    "length",
                    "default kernel",
                    "default tokens/s",
                    "fastest kernel",
                    "default / fastest",
                    "default / plain",
                    "bf16 tokens/s",
                    "bf16 / default",
                    "other processes (cores)",
                ],
                [
                    [
                        r["config"],
                        r["batch_size"],
                        r["length"],
                        r["kernel"].replace("Kernel", ""),
                        f"{r['tokens_per_s']['default']:.0f}",
                        r["fastest_kernel"].replace("Kernel", ""),
                        f"{r['default_vs_fastest']:.2f}",
                        f"{r['default_vs_plain']:.2f}",
                        f"{r['tokens_per_s']['bf16']:.0f}",
                        f"{r['bf16_vs_default']:.2f}",
                        _cores(r),
                    ]
                    for r in grid_rows
                ],
            )
        )
        worst = min(grid_rows, key=lambda r: r["default_vs_fastest"])
        slowest_plain = min(grid_rows, key=lambda r: r["default_vs_plain"])
        slowest_bf16 = min(grid_rows, key=lambda r: r["bf16_vs_default"])
        parts.append(
            f"Worst cells (tokens/s ratios): default / fastest kernel {worst['default_vs_fastest']:.2f} "
            f"({worst['config']} batch {worst['batch_size']} length {worst['length']}; goal >= 0.9); "
            f"default / plain {slowest_plain['default_vs_plain']:.2f} ({slowest_plain['config']} batch "
            f"{slowest_plain['batch_size']} length {slowest_plain['length']}; goal >= 1); bf16 / default "
            f"{slowest_bf16['bf16_vs_default']:.2f} ({slowest_bf16['config']} batch {slowest_bf16['batch_size']} "
            f"length {slowest_bf16['length']}). Where two sides run the same kernel their ratio is the timing noise."
        )
    peaks = results.get("gemm_peaks")
    if peaks:
        parts.append(
            f"GEMM peak (2048^3, {results['machine']['torch_threads']} threads): fp32 {peaks['fp32']:.0f} GFLOP/s, "
            f"bf16 {peaks['bf16']:.0f} GFLOP/s ({peaks['bf16'] / peaks['fp32']:.1f}x)"
        )
    if results["allennlp"]:
        parts.append(
            markdown_table(
                [
                    "config",
                    "workload",
                    "tokens",
                    "ours fp32 tokens/s",
                    "ours bf16 tokens/s",
                    "AllenNLP tokens/s",
                    "fp32 / AllenNLP",
                    "bf16 / AllenNLP",
                    "bf16 / fp32",
                    "ours fp32 nominal FLOP/s / fp32 GEMM peak",
                    "ours f32 max error",
                    "AllenNLP f32 max error",
                    "ours / AllenNLP mean error",
                    "bf16 mean error",
                    "other processes (cores)",
                ],
                [
                    [
                        r["config"],
                        r["workload"],
                        r["tokens"],
                        f"{r['ours_tokens_per_s']:.0f}",
                        f"{r['ours_bf16_tokens_per_s']:.0f}",
                        f"{r['allennlp_tokens_per_s']:.0f}",
                        f"{r['ratio']:.2f}x",
                        f"{r['bf16_ratio']:.2f}x",
                        f"{r['ours_bf16_tokens_per_s'] / r['ours_tokens_per_s']:.2f}x",
                        f"{100 * r['ours_fraction_of_fp32_peak']:.0f}%",
                        f"{r['ours_float32_error']:.2e}",
                        f"{r['allennlp_float32_error']:.2e}",
                        f"{r['ours_mean_error'] / r['allennlp_mean_error']:.2f}",
                        f"{r['ours_bf16_mean_error']:.2e}",
                        _cores(r),
                    ]
                    for r in results["allennlp"]
                ],
            )
        )
    return "\n\n".join(parts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="en-tiny,small,original", help="grid configurations")
    parser.add_argument("--allennlp-configs", default="small,original", help="configurations run against AllenNLP")
    parser.add_argument("--batch-sizes", default="1,8,32,128")
    parser.add_argument("--lengths", default="1,10,50,300,1000,5000")
    parser.add_argument(
        "--max-cell-tokens",
        default="default=20000,original=2000",
        help="largest batch x length timed per configuration (name=N, default=N)",
    )
    parser.add_argument("--reps", type=int, default=3, help="timed rounds per grid cell (after one warm-up)")
    parser.add_argument(
        "--retries", type=int, default=2, help="times a grid cell is timed again while other processes use the CPUs"
    )
    parser.add_argument("--allennlp-reps", type=int, default=3, help="timed rounds per AllenNLP workload")
    parser.add_argument("--batch1-sentences", type=int, default=150)
    parser.add_argument("--long-sentences", type=int, default=4, help="300- and 1,000-token sentences each")
    parser.add_argument(
        "--batch32-sentences", type=int, default=0, help="sentences per batch-32 sample (default 768, original 256)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-allennlp", action="store_true")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the random weights are written")
    parser.add_argument(
        "--plan-dir",
        type=Path,
        default=None,
        help="kernel plan directory (default: a fresh one, so that this run measures its own plan)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="shapes", help="the results' file name, without suffix")
    args = parser.parse_args(argv)
    args.configs = [c for c in args.configs.split(",") if c]
    args.allennlp_configs = [c for c in args.allennlp_configs.split(",") if c]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.lengths = [int(n) for n in args.lengths.split(",")]
    args.max_cell_tokens = {k: int(v) for k, v in (item.split("=") for item in args.max_cell_tokens.split(","))}
    args.max_cell_tokens.setdefault("default", 20000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ[kernel_plan.DIRECTORY_VARIABLE] = str(args.plan_dir or tempfile.mkdtemp(prefix="kernel-plans-"))
    corpus = brown_sentences(brown_directory(args.cache_dir))
    results: dict[str, Any] = {"machine": machine_info(), "grid": [], "allennlp": []}
    results["gemm_peaks"] = peaks = gemm_peaks()
    for name in args.configs:
        results["grid"] += grid(name, args, corpus)
    try:
        import allennlp_side  # noqa: F401
    except ImportError:
        args.no_allennlp = True
        log("allennlp is not importable: grid only (run in the oracle venv for the comparison)")
    if not args.no_allennlp:
        for name in args.allennlp_configs:
            results["allennlp"] += against_allennlp(name, args, corpus, peaks["fp32"])
    results["kernel_plan"] = kernel_plan.PLAN.entries()
    publish(args.out, args.name, results, report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
