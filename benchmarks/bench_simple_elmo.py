"""Throughput and parity against simple_elmo 0.9.2 (bilm-tf's graph on TensorFlow), in a worker process.

simple_elmo (PyPI ``simple-elmo``, the NLPL's packaging of bilm-tf for TensorFlow 2) runs the
original TensorFlow biLM graph, so it is the TF reference: the same ``options.json`` +
``weights.hdf5`` files, read by its own code. It needs a venv of its own (TF does not share one
with our torch); build it once::

    python3 -m venv ../venvs/simple_elmo
    ../venvs/simple_elmo/bin/pip install tensorflow-cpu==2.21.0 simple-elmo==0.9.2
    ../venvs/simple_elmo/bin/pip install --no-deps tf-keras==2.21.0

TF 2.16+ ships Keras 3, which lacks the ``LSTMCell`` bilm-tf builds (``tf.compat.v1.nn.rnn_cell``):
the worker runs with ``TF_USE_LEGACY_KERAS=1`` and ``tf-keras`` (``--no-deps``, or pip pulls the
full ``tensorflow`` wheel beside ``tensorflow-cpu``).

This script runs in our venv and starts ``simple_elmo_side.py`` with ``--simple-elmo-python``
(JSON lines over a pipe; one worker per configuration). Their side: the model as
``ElmoModel().load(directory)`` builds it, and per batch the op ``get_elmo_vectors(texts,
layers="all")`` runs, in one session with ``--threads`` intra-op threads (1 inter-op). bilm-tf's
LSTMs are stateful (each layer and direction keeps ``(c, h)`` in variables carried from batch to
batch, and simple_elmo never resets them); the worker assigns zeros to them before every batch,
so both sides compute every batch from zero state. The reset (one more ``session.run``) is timed
with their batch; the JSON also gives its share of their time and their tokens/s without it
(``simple_elmo_reset_share``, ``simple_elmo_tokens_per_s_without_reset``). Every workload also records how far their
vectors move without the reset (``no_reset_max_diff``: a sentence then depends on the batches
before it).

Configurations ``--configs`` (default small and original: the published shapes with random
weights in the official layout, ``_common.model_files``; ``en-tiny`` is the shipped tiny model).
Workloads: batch 1 and batch 32 over natural Brown sentences drawn with ``--seed``. Ours:
``ElmoEmbedder(options_file, weight_file).embed_batch(batch)`` per batch with
``torch.set_num_threads(--threads)``; every other precision in ``--ours-precisions`` adds a side
``ElmoEmbedder(..., precision=p)`` (skipped, with a message, where ``ElmoEmbedder`` has no
``precision`` or refuses ``p``). One warm-up pass per side, then ``--reps`` rounds over the
workload, the order of the sides reversed from round to round (ours / theirs / theirs / ours ...);
median wall seconds -> tokens/s. Their time is measured in the worker (char ids, reset, ``session.run``, one array view
per sentence), so the pipe is not counted.

Parity: the largest absolute difference ours vs theirs per layer, and each side's float32 error
(max and mean absolute) against a float64 evaluation of the same weights (our biLM in float64 on
the plain path, ``fast_paths(enabled=False)``, kept in float64).

Examples:
    .venv/bin/python benchmarks/bench_simple_elmo.py       # small and original
    .venv/bin/python benchmarks/bench_simple_elmo.py --configs en-tiny \\
        --sentences-batch1 10 --sentences-batch32 64 --reps 1 --out /tmp/simple_elmo_smoke   # a smoke run

Writes ``simple_elmo.json`` and ``simple_elmo.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    DEFAULT_CACHE,
    REPO,
    RESULTS,
    batches,
    embed_all,
    float64_layers,
    layer_max_diff,
    load_average,
    log,
    machine_info,
    markdown_table,
    mean_abs_diff,
    model_files,
    publish,
    time_sides,
)
from corpora import brown_directory, brown_sentences

from flair_elmo_modes import ElmoEmbedder

SIDE = Path(__file__).resolve().parent / "simple_elmo_side.py"
DEFAULT_PYTHON = REPO.parent / "venvs" / "simple_elmo" / "bin" / "python"
THEIRS = "simple_elmo"


class SimpleElmoWorker:
    """``simple_elmo_side.py`` in its own Python, one model loaded; requests and replies are JSON lines."""

    def __init__(self, python: Path, threads: int, inter_threads: int) -> None:
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [str(python), str(SIDE), "--intra-threads", str(threads), "--inter-threads", str(inter_threads)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the simple_elmo worker exited ({self.process.wait()}); its stderr is above")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"simple_elmo worker, {cmd}: {reply['error']}")
        return reply

    def load(self, options_file: Path, weight_file: Path, max_batch_size: int) -> dict[str, Any]:
        return self.request("load", options=str(options_file), weights=str(weight_file), max_batch_size=max_batch_size)

    def embed(
        self, sentences: Sequence[list[str]], batch_size: int, save: bool, reset: bool = True
    ) -> tuple[float, float, list[np.ndarray] | None]:
        """Wall seconds of one pass (in the worker), the part of it spent resetting states, and the
        vectors (when ``save``)."""
        reply = self.request("embed", sentences=list(sentences), batch_size=batch_size, save=save, reset=reset)
        arrays = None
        if save:
            with np.load(reply["vectors_file"]) as data:
                arrays = [data[str(i)] for i in range(len(sentences))]
        return reply["seconds"][0], reply["reset_seconds"][0], arrays

    def close(self) -> None:
        """Ask the worker to quit; kill it if it does not (or is beyond asking)."""
        try:
            if self.process.poll() is None:
                self.request("quit")
            self.process.wait(timeout=60)
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


def our_embedders(options_file: Path, weight_file: Path, precisions: Sequence[str]) -> dict[str, ElmoEmbedder]:
    """``ours`` (float32) and ``ours_<p>`` for every other precision ``ElmoEmbedder`` accepts."""
    embedders = {"ours": ElmoEmbedder(options_file, weight_file)}
    for precision in precisions:
        if precision == "fp32":
            continue
        try:
            embedders[f"ours_{precision}"] = ElmoEmbedder(options_file, weight_file, precision=precision)
        except TypeError as error:
            log(f"precision {precision} skipped: ElmoEmbedder does not take it ({error})")
        except ValueError as error:
            log(f"precision {precision} skipped: refused ({error})")
    return embedders


def workload(
    label: str,
    batch_size: int,
    sentences: list[list[str]],
    ours: dict[str, ElmoEmbedder],
    model: tuple[Path, Path],
    worker: SimpleElmoWorker,
    reps: int,
) -> dict[str, Any]:
    """Times and errors of every side on one workload (a row of the report, less its config)."""
    batch_list = batches(sentences, batch_size)
    n_tokens = sum(len(s) for s in sentences)
    outputs: dict[str, list[np.ndarray]] = {}
    reset_seconds: list[float] = []
    calls = [0]

    def ours_side(key: str) -> Callable[[], None]:
        def run() -> None:
            outputs[key] = embed_all(ours[key], batch_list)

        return run

    def theirs_side() -> float:
        calls[0] += 1  # call 1 is the warm-up; the vectors of the last round are kept
        seconds, reset, arrays = worker.embed(sentences, batch_size, save=calls[0] == reps + 1)
        if calls[0] > 1:
            reset_seconds.append(reset)
        if arrays is not None:
            outputs[THEIRS] = arrays
        return seconds

    sides: dict[str, Callable[[], float | None]] = {"ours": ours_side("ours"), THEIRS: theirs_side}
    sides.update({key: ours_side(key) for key in ours if key != "ours"})
    load = load_average()
    times = time_sides(sides, reps)
    seconds = {side: statistics.median(t) for side, t in times.items()}
    _, _, carried = worker.embed(sentences, batch_size, save=True, reset=False)
    assert carried is not None
    reference = float64_layers(*model, batch_list)
    row: dict[str, Any] = {
        "workload": label,
        "batch_size": batch_size,
        "sentences": len(sentences),
        "tokens": n_tokens,
        "seconds": times,
        "load_average_before": load,
        "ours_tokens_per_s": n_tokens / seconds["ours"],
        "simple_elmo_tokens_per_s": n_tokens / seconds[THEIRS],
        "ratio": seconds[THEIRS] / seconds["ours"],
        "simple_elmo_reset_share": statistics.median(r / t for r, t in zip(reset_seconds, times[THEIRS], strict=True)),
        "simple_elmo_tokens_per_s_without_reset": n_tokens
        / statistics.median(t - r for r, t in zip(reset_seconds, times[THEIRS], strict=True)),
        "ours_vs_simple_elmo_max_diff_per_layer": layer_max_diff(outputs["ours"], outputs[THEIRS]),
        "no_reset_max_diff": max(layer_max_diff(carried, outputs[THEIRS])),
    }
    row["ours_vs_simple_elmo_max_diff"] = max(row["ours_vs_simple_elmo_max_diff_per_layer"])
    for side in sides:
        per_layer = layer_max_diff(outputs[side], reference)
        row[f"{side}_float64_error_per_layer"] = per_layer
        row[f"{side}_float64_error"] = max(per_layer)
        row[f"{side}_mean_error"] = mean_abs_diff(outputs[side], reference)
        if side.startswith("ours_"):
            row[f"{side}_tokens_per_s"] = n_tokens / seconds[side]
            row[f"{side}_ratio"] = seconds[THEIRS] / seconds[side]
    return row


def compare(
    name: str, args: argparse.Namespace, corpus: list[list[str]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every workload of configuration ``name``; also the worker's facts (versions, threads)."""
    options_file, weight_file = model_files(name, args.cache_dir)
    ours = our_embedders(options_file, weight_file, args.ours_precisions)
    rng = random.Random(args.seed)
    workloads = [
        ("batch 1, natural", 1, rng.sample(corpus, args.sentences_batch1)),
        ("batch 32, natural", 32, rng.sample(corpus, args.sentences_batch32)),
    ]
    worker = SimpleElmoWorker(args.simple_elmo_python, args.threads, args.tf_inter_threads)
    try:
        info = worker.load(options_file, weight_file, max(size for _, size, _ in workloads))
        log(f"simple_elmo {name}: loaded ({len(info['state_variables'])} LSTM state variables)")
        rows = []
        for label, batch_size, sentences in workloads:
            model = (options_file, weight_file)
            row = {"config": name, **workload(label, batch_size, sentences, ours, model, worker, args.reps)}
            log(
                f"{name} {label}: ours {row['ours_tokens_per_s']:.0f} tokens/s, simple_elmo "
                f"{row['simple_elmo_tokens_per_s']:.0f} tokens/s ({row['ratio']:.2f}x); max |ours - theirs| "
                f"{row['ours_vs_simple_elmo_max_diff']:.2e}; float64 errors ours {row['ours_float64_error']:.2e}, "
                f"simple_elmo {row['simple_elmo_float64_error']:.2e}"
            )
            rows.append(row)
    finally:
        worker.close()
    return rows, info


def report(results: dict[str, Any]) -> str:
    rows = results["rows"]
    parts = [
        markdown_table(
            [
                "config",
                "workload",
                "tokens",
                "ours tokens/s",
                "simple_elmo tokens/s",
                "ours / simple_elmo speed",
                "max |ours - simple_elmo| per layer",
                "ours f32 max error",
                "simple_elmo f32 max error",
                "ours / simple_elmo mean error",
            ],
            [
                [
                    r["config"],
                    r["workload"],
                    r["tokens"],
                    f"{r['ours_tokens_per_s']:.0f}",
                    f"{r['simple_elmo_tokens_per_s']:.0f}",
                    f"{r['ratio']:.2f}x",
                    ", ".join(f"{d:.1e}" for d in r["ours_vs_simple_elmo_max_diff_per_layer"]),
                    f"{r['ours_float64_error']:.2e}",
                    f"{r['simple_elmo_float64_error']:.2e}",
                    f"{r['ours_mean_error'] / r['simple_elmo_mean_error']:.2f}",
                ]
                for r in rows
            ],
        )
    ]
    precision_rows = [
        [
            r["config"],
            r["workload"],
            key.removeprefix("ours_").removesuffix("_tokens_per_s"),
            f"{r[key]:.0f}",
            f"{r[key.replace('_tokens_per_s', '_ratio')]:.2f}x",
            f"{r[key.replace('_tokens_per_s', '_float64_error')]:.2e}",
        ]
        for r in rows
        for key in r
        if key.startswith("ours_") and key.endswith("_tokens_per_s") and key != "ours_tokens_per_s"
    ]
    if precision_rows:
        parts.append(
            markdown_table(
                ["config", "workload", "our precision", "tokens/s", "vs simple_elmo speed", "max error vs float64"],
                precision_rows,
            )
        )
    resets = [f"{r['config']} {r['workload']} {100 * r['simple_elmo_reset_share']:.2f}%" for r in rows]
    carried = [f"{r['config']} {r['workload']} {r['no_reset_max_diff']:.1e}" for r in rows]
    theirs, settings = results["simple_elmo"], results["settings"]
    parts.append(
        f"simple_elmo {theirs.get('simple_elmo')} on TensorFlow {theirs.get('tensorflow')}, "
        f"{settings['threads']} threads both sides (TF inter-op {settings['tf_inter_threads']}), "
        f"median of {settings['reps']} rounds after one warm-up each. State reset share of their time: "
        + "; ".join(resets)
        + ". Largest change of their vectors when the state is carried instead (simple_elmo's default): "
        + "; ".join(carried)
        + "."
    )
    return "\n\n".join(parts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="small,original", help="small, original, en-tiny (comma-separated)")
    parser.add_argument(
        "--simple-elmo-python",
        type=Path,
        default=Path(os.environ.get("SIMPLE_ELMO_PYTHON", DEFAULT_PYTHON)),
        help="the Python of the simple_elmo venv (default $SIMPLE_ELMO_PYTHON or ../venvs/simple_elmo/bin/python)",
    )
    parser.add_argument("--sentences-batch1", type=int, default=100, help="Brown sentences of the batch-1 workload")
    parser.add_argument("--sentences-batch32", type=int, default=256, help="Brown sentences of the batch-32 workload")
    parser.add_argument("--reps", type=int, default=3, help="timed rounds per workload (after one warm-up per side)")
    parser.add_argument("--ours-precisions", default="fp32", help="ours' precisions to time (fp32 always)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads and TF intra-op threads")
    parser.add_argument("--tf-inter-threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the random weights are written")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.configs = [c for c in args.configs.split(",") if c]
    args.ours_precisions = [p for p in args.ours_precisions.split(",") if p]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.simple_elmo_python.is_file():
        raise SystemExit(f"error: {args.simple_elmo_python} not found; build the simple_elmo venv (see --help)")
    torch.set_num_threads(args.threads)
    corpus = brown_sentences(brown_directory(args.cache_dir))
    results: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items()
            if key not in ("out", "cache_dir")
        },
        "simple_elmo": {},
        "rows": [],
    }
    for name in args.configs:
        rows, info = compare(name, args, corpus)
        results["rows"] += rows
        results["simple_elmo"] = {k: v for k, v in info.items() if k not in ("ok", "state_variables")}
    publish(args.out, "simple_elmo", results, report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
