"""Training at corpus scale: memory vs corpus size, tokens/s, DDP scaling, and a paper estimate for GPUs.

1. Memory (``--rss``): synthetic sharded corpora of 2 M and 20 M tokens (the same 50,000-word Zipf
   vocabulary, 1 M tokens per shard), ``--rss-steps`` steps of ``flair-elmo train`` on each in a
   fresh process; prints each process's peak RSS. The corpus is streamed, so the two should agree.
2. Scaling (``--scaling``): the same global batch on 1 process x 1 thread and on 2 processes x 1
   thread (``torchrun``, gloo, loopback); training tokens/s of each, speedup and efficiency
   (speedup / 2).
3. Estimate (always): all-reduce bytes per step (fp32 gradients of every parameter) against the
   arithmetic of a step, for "small" and "original" on N GPUs, from parameter counts and
   :func:`_common.nominal_flops`. A calculation, not a measurement: no GPU was used.

Prints JSON and markdown tables; writes ``results/training.json`` and ``results/training.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import CONFIGS, DEFAULT_CACHE, RESULTS, log, machine_info, markdown_table, nominal_flops, publish

from flair_elmo_modes.training.lm import BiLanguageModel

# The architecture trained in 1. and 2.: the trainer's small default scaled down, so that a few
# hundred steps take minutes on two CPU cores.
ARCHITECTURE = ("--cell-dim", "256", "--projection-dim", "64", "--filters", "1:32,2:32,3:64,4:128")

# Runs the CLI and reports the process's peak RSS (KiB, Linux ru_maxrss) as the last stderr line.
RSS_WRAPPER = """
import json, resource, sys
from flair_elmo_modes.cli.main import main
try:
    code = main(sys.argv[1:])
finally:
    print(json.dumps({"peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), file=sys.stderr)
raise SystemExit(code)
"""


def synthetic_corpus(directory: Path, tokens: int, seed: int = 0, vocabulary: int = 50_000) -> Path:
    """Shards of about 1 M tokens of Zipf-distributed words, sentences of 5-40 tokens (written once)."""
    done = directory / "DONE"
    if done.is_file():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocabulary)]
    cumulative = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(vocabulary)))
    written, shard = 0, 0
    while written < tokens:
        lines, in_shard = [], 0
        while in_shard < 1_000_000 and written + in_shard < tokens:
            sentence = rng.choices(words, cum_weights=cumulative, k=rng.randint(5, 40))
            lines.append(" ".join(sentence))
            in_shard += len(sentence)
        (directory / f"train-{shard:04d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        written += in_shard
        shard += 1
    done.write_text(f"{written}\n")
    return directory


def train(
    processes: int, corpus: Path, output: Path, steps: int, batch_size: int, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One training run; its result.json plus the peak RSS of (each) process."""
    args = [str(corpus / "train-*.txt"), "--output", str(output), "--max-steps", str(steps)]
    args += ["--batch-size", str(batch_size), "--threads", "1", "--no-progress", "--restart", *ARCHITECTURE, *extra]
    wrapper = output.parent / "rss_wrapper.py"  # a file: torchrun runs scripts
    wrapper.write_text(RSS_WRAPPER, encoding="utf-8")
    command = [sys.executable]
    if processes > 1:
        command += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command += [str(wrapper), "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"training failed ({done.returncode}): {done.stderr[-2000:]}")
    peaks = [json.loads(line)["peak_rss_kib"] / 1024 for line in done.stderr.splitlines() if "peak_rss_kib" in line]
    result = json.loads((output / "result.json").read_text(encoding="utf-8"))
    return {
        "processes": processes,
        "steps": result["steps"],
        "tokens": result["train_tokens"],
        "seconds": result["train_seconds"],
        "tokens_per_s": result["tokens_per_second"],
        "peak_rss_mib": peaks,
    }


def memory(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    rows = []
    for tokens in (2_000_000, 20_000_000):
        corpus = synthetic_corpus(args.cache_dir / "training" / f"zipf-{tokens}", tokens)
        log(f"memory: {tokens:,} tokens, {args.rss_steps} steps")
        run = train(1, corpus, work / f"rss-{tokens}", args.rss_steps, args.batch_size, ("--shuffle-buffer", "20000"))
        rows.append({"corpus_tokens": tokens, **run})
    return rows


def scaling(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    corpus = synthetic_corpus(args.cache_dir / "training" / "zipf-2000000", 2_000_000)
    runs = {}
    for processes in (1, 2):
        log(f"scaling: {processes} process(es) x 1 thread, global batch {args.batch_size}")
        runs[processes] = train(processes, corpus, work / f"scale-{processes}", args.scaling_steps, args.batch_size)
    speedup = runs[2]["tokens_per_s"] / runs[1]["tokens_per_s"]
    return {"runs": list(runs.values()), "speedup": speedup, "efficiency": speedup / 2}


def estimate(vocab_size: int, tokens_per_gpu_step: int, sentence_length: int) -> list[dict[str, Any]]:
    """All-reduce traffic vs arithmetic per step of N-GPU data-parallel training (a calculation)."""
    rows = []
    for name in ("small", "original"):
        options = CONFIGS[name]
        model = BiLanguageModel(options, vocab_size, "adaptive", (20_000, 100_000), share_softmax=True)
        parameters = sum(p.numel() for p in model.parameters())
        forward = nominal_flops(options, [sentence_length])["total"]  # per token, straightforward
        step_flops = 3 * forward * tokens_per_gpu_step  # forward + backward ~ 3x forward
        gradient_bytes = 4 * parameters
        for gpus in (2, 8, 64):
            ring_bytes = 2 * (gpus - 1) / gpus * gradient_bytes  # sent (and received) per GPU
            row = {"config": name, "parameters": parameters, "gpus": gpus, "allreduce_mb_per_gpu": ring_bytes / 1e6}
            row["step_tflop_per_gpu"] = step_flops / 1e12
            for link, bandwidth in (("nvlink_150GBps", 150e9), ("ib_100Gbps", 12.5e9), ("ethernet_10Gbps", 1.25e9)):
                row[f"allreduce_ms_{link}"] = 1e3 * ring_bytes / bandwidth
            for tflops in (10, 50):  # assumed sustained rates per GPU (an LSTM's small GEMMs stay far below peak)
                row[f"compute_ms_at_{tflops}_tflops"] = 1e3 * step_flops / (tflops * 1e12)
            rows.append(row)
    return rows


def report(results: dict[str, Any]) -> str:
    parts = []
    if results.get("memory"):
        rows = [
            [f"{r['corpus_tokens']:,}", r["steps"], f"{r['tokens_per_s']:.0f}", f"{r['peak_rss_mib'][0]:.0f}"]
            for r in results["memory"]
        ]
        low, high = (r["peak_rss_mib"][0] for r in results["memory"])
        parts.append(markdown_table(["corpus tokens", "steps", "train tokens/s", "peak RSS MiB"], rows))
        parts.append(f"20 M / 2 M peak RSS: {high / low:.3f}")
    if results.get("scaling"):
        scale = results["scaling"]
        rows = [
            [r["processes"], r["steps"], f"{r['tokens_per_s']:.0f}", " / ".join(f"{m:.0f}" for m in r["peak_rss_mib"])]
            for r in scale["runs"]
        ]
        parts.append(markdown_table(["processes x 1 thread", "steps", "train tokens/s", "peak RSS MiB"], rows))
        parts.append(f"speedup {scale['speedup']:.2f}, efficiency {scale['efficiency']:.2f}")
    links = ("nvlink_150GBps", "ib_100Gbps", "ethernet_10Gbps")
    rows = [
        [r["config"], f"{r['parameters'] / 1e6:.1f} M", r["gpus"], f"{r['allreduce_mb_per_gpu']:.0f}"]
        + [f"{r[f'allreduce_ms_{link}']:.0f}" for link in links]
        + [f"{r['compute_ms_at_10_tflops']:.0f}", f"{r['compute_ms_at_50_tflops']:.0f}"]
        for r in results["estimate"]
    ]
    header = ["config", "parameters", "GPUs", "all-reduce MB/GPU/step", "NVLink 150 GB/s ms", "IB 100 Gb/s ms"]
    parts.append(markdown_table([*header, "10 GbE ms", "compute ms at 10 TFLOP/s", "at 50 TFLOP/s"], rows))
    return "\n\n".join(parts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rss", action="store_true", help="measure memory vs corpus size")
    parser.add_argument("--scaling", action="store_true", help="measure 1 vs 2 processes")
    parser.add_argument("--rss-steps", type=int, default=300)
    parser.add_argument("--scaling-steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch (sentences)")
    parser.add_argument("--vocab-size", type=int, default=800_000, help="for the estimate (1B Word: 793,471)")
    parser.add_argument("--tokens-per-gpu-step", type=int, default=128 * 20, help="for the estimate")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict[str, Any] = {"machine": machine_info()}
    with tempfile.TemporaryDirectory(prefix="bench-training-") as work:
        if args.rss:
            results["memory"] = memory(args, Path(work))
        if args.scaling:
            results["scaling"] = scaling(args, Path(work))
    results["estimate"] = estimate(args.vocab_size, args.tokens_per_gpu_step, 20)
    text = report(results)
    publish(args.out, "training", results, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
