"""How accurate bf16 is: per biLM layer, the error of ``precision="fp32"`` and ``"bf16"`` against a
float64 evaluation of the same weights.

Workloads: natural Brown sentences at batch 32, and single sentences of 1,000 tokens of running
Brown text (long recurrences: an error carried in the LSTM state would grow along them). Models:
the shipped ``en-tiny`` (trained weights) and the published "small" and "original" architectures with
random weights in the official layout (``_common.model_files``). For each: mean and max abs error per
layer, the mean |value| of the layer, and the mean error relative to it.

Prints JSON and a markdown table; writes ``results/precision.json`` and ``results/precision.md``.
"""

from __future__ import annotations

import argparse
import copy
import random
from pathlib import Path
from typing import Any

import torch
from _common import (
    DEFAULT_CACHE,
    RESULTS,
    batches,
    log,
    machine_info,
    markdown_table,
    model_files,
    publish,
    running_text,
)
from corpora import brown_directory, brown_sentences

from flair_elmo_modes.bilm.fast.fast_paths import fast_paths
from flair_elmo_modes.bilm.hdf5 import load_bilm
from flair_elmo_modes.runner import BiLmRunner

PRECISIONS = ("fp32", "bf16")


def real_tokens(runner: BiLmRunner, batch: list[list[str]]) -> torch.Tensor:
    """``(n_layers + 1, real tokens, dim)`` float64 layers of the batch's real tokens."""
    output = runner.run(batch)
    return output.layers[:, output.mask].double()


def measure(name: str, label: str, batch_list: list[list[list[str]]], cache_dir: Path) -> list[dict[str, Any]]:
    bilm = load_bilm(*model_files(name, cache_dir)).eval()
    exact_runner = BiLmRunner(copy.deepcopy(bilm).double())
    with fast_paths(enabled=False):
        exact = torch.cat([real_tokens(exact_runner, batch) for batch in batch_list], dim=1)
    magnitude = exact.abs().mean(dim=(1, 2))
    rows = []
    for precision in PRECISIONS:
        runner = BiLmRunner(bilm, precision=precision)
        got = torch.cat([real_tokens(runner, batch) for batch in batch_list], dim=1)
        error = (got - exact).abs()
        for layer in range(exact.shape[0]):
            rows.append(
                {
                    "config": name,
                    "workload": label,
                    "precision": precision,
                    "layer": layer,
                    "tokens": exact.shape[1],
                    "mean_abs_value": float(magnitude[layer]),
                    "mean_error": float(error[layer].mean()),
                    "max_error": float(error[layer].max()),
                    "relative_mean_error": float(error[layer].mean() / magnitude[layer]),
                }
            )
        relative = ", ".join(f"{row['relative_mean_error']:.1e}" for row in rows[-exact.shape[0] :])
        log(f"{name} {label} {precision}: relative mean error per layer {relative}")
    return rows


def report(results: dict[str, Any]) -> str:
    return markdown_table(
        [
            "config",
            "workload",
            "precision",
            "layer",
            "mean |value|",
            "mean abs error",
            "max abs error",
            "mean error / mean |value|",
        ],
        [
            [
                r["config"],
                r["workload"],
                r["precision"],
                r["layer"],
                f"{r['mean_abs_value']:.3g}",
                f"{r['mean_error']:.2e}",
                f"{r['max_error']:.2e}",
                f"{r['relative_mean_error']:.2e}",
            ]
            for r in results["rows"]
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="en-tiny,small,original")
    parser.add_argument("--sentences", type=int, default=128, help="natural sentences at batch 32 (original: half)")
    parser.add_argument("--long-sentences", type=int, default=2, help="1,000-token sentences, one at a time")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    corpus = brown_sentences(brown_directory(args.cache_dir))
    results: dict[str, Any] = {"machine": machine_info(), "rows": []}
    for name in args.configs.split(","):
        count = args.sentences // 2 if name == "original" else args.sentences
        natural = random.Random(args.seed).sample(corpus, count)
        results["rows"] += measure(name, "natural, batch 32", list(batches(natural, 32)), args.cache_dir)
        long = running_text(1000, args.long_sentences, corpus)
        results["rows"] += measure(name, "1,000-token sentences", [[s] for s in long], args.cache_dir)
    publish(args.out, "precision", results, report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
