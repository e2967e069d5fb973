"""What each optimisation of the biLM gives: end-to-end ``embed_batch`` with one shortcut turned off.

Every variant computes the same values (``tests/bilm/test_fast_paths.py`` checks the shortcuts);
only the time changes. Variants:

- ``final``: the code as it is.
- ``no dedup``: the char CNN, highway and projection run for every position of the batch (padding
  included), not once per distinct token.
- ``no window trimming``: every convolution window of every token is computed.
- ``no dedup, no trimming``: both (the char encoder as AllenNLP runs it).
- ``no oneDNN``: ``bmm``/``addmm``/``mm`` (MKL) instead of oneDNN's pre-packed weights.
- ``no oneDNN, out-of-place steps``: the autograd code path (new tensors every step) without autograd.
- ``torch.tanh in the cell``: the LSTM cell's two tanh with ``torch.tanh`` instead of
  ``2 * sigmoid(2x) - 1``.
- ``input projection per step``: one input-projection matmul per time step instead of one per
  block of 512 packed rows.
- ``before (git <rev>)``: ``bilm/lstm.py`` and ``bilm/char_encoder.py`` as they were at ``--before``
  (padded instead of packed LSTM rows, a ``cat`` per step once rows end, every window convolved).

Then the optional char-CNN token cache (``CharacterEncoder.cache_tokens`` with the most frequent
Brown words), the biLM alone under ``torch.inference_mode`` / ``torch.no_grad`` / autograd enabled with
frozen weights, the share of time per part of the final code, input-projection block sizes,
char-CNN groupings, and length-aware batching (``embed_sentences(..., sort_batches=N)``: sentences
batched by length within windows of N batches, order restored).

Examples:
    /work/venv/bin/python benchmarks/bench_ablation.py
    /work/venv/bin/python benchmarks/bench_ablation.py --configs small --passes 5
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    DEFAULT_CACHE,
    REPO,
    RESULTS,
    batches,
    brown_sentences,
    load_average,
    machine_info,
    markdown_table,
    model_files,
    sample_sentences,
    write_json,
)

from flair_elmo_modes import ElmoEmbedder
from flair_elmo_modes.bilm import batch_to_ids, load_bilm, onednn
from flair_elmo_modes.bilm.char_encoder import CharacterEncoder
from flair_elmo_modes.bilm.model import ElmoBiLm

BEFORE = "c9cd844"  # the commit before the fast paths


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def full_convolution(encoder: CharacterEncoder, char_ids: torch.Tensor) -> torch.Tensor:
    embedded = encoder.char_embedding(char_ids).transpose(1, 2)  # (n, char_dim, max_chars)
    return torch.cat([conv(embedded).max(dim=-1).values for conv in encoder.convolutions], dim=-1)


def every_position(encoder: CharacterEncoder, char_ids: torch.Tensor) -> torch.Tensor:
    batch, timesteps, max_chars = char_ids.shape
    return encoder.encode_distinct(char_ids.reshape(-1, max_chars)).view(batch, timesteps, -1)


def tanh_cell(lstm: Any, gates: torch.Tensor, memory: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``BidirectionalLstm._cell_from_sigmoids`` computed with ``torch.tanh`` (the doublings undone)."""
    gates[..., 2 * lstm.cell_dim : 3 * lstm.cell_dim].mul_(0.5)
    return lstm._cell_in_place(gates, memory, out).mul_(0.5)


def load_before_modules(rev: str) -> tuple[Any, Any] | None:
    """``(lstm, char_encoder)`` modules of revision ``rev``, or None outside a git checkout."""
    modules = []
    directory = Path(tempfile.mkdtemp(prefix="elmo-before-"))
    for name in ("lstm", "char_encoder"):
        try:
            source = subprocess.run(
                ["git", "-C", str(REPO), "show", f"{rev}:flair_elmo_modes/bilm/{name}.py"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError) as error:
            log(f"skipping 'before': cannot read {name}.py at {rev} ({error})")
            return None
        path = directory / f"before_{name}.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(f"before_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules.append(module)
    return modules[0], modules[1]


@contextlib.contextmanager
def without_onednn() -> Iterator[None]:
    """The ordinary torch ops (``bmm``/``addmm``/``mm``) instead of oneDNN's pre-packed weights."""
    usable = onednn.usable
    onednn.usable = lambda like: False  # type: ignore[assignment]
    try:
        yield
    finally:
        onednn.usable = usable  # type: ignore[assignment]


def variant(
    bilm: ElmoBiLm, name: str, before: tuple[Any, Any] | None
) -> tuple[ElmoBiLm, Callable[[], contextlib.AbstractContextManager[None]]] | None:
    """``bilm`` (modified in place) with one shortcut off, and the context to run it in."""
    encoder, lstm = bilm.char_encoder, bilm.lstm
    context: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
    if name in ("no dedup", "no dedup, no trimming"):
        encoder.forward = lambda ids: every_position(encoder, ids)  # type: ignore[method-assign]
    if name in ("no window trimming", "no dedup, no trimming"):
        encoder.convolve = lambda ids: full_convolution(encoder, ids)  # type: ignore[method-assign]
    if name == "input projection per step":
        lstm.input_projection_rows = 1
    if name == "torch.tanh in the cell":
        lstm._cell_from_sigmoids = lambda *args: tanh_cell(lstm, *args)  # type: ignore[method-assign]
    if name.startswith("no oneDNN"):
        context = without_onednn
    if name == "no oneDNN, out-of-place steps":
        lstm._run_layer_in_place = lstm._run_layer  # type: ignore[method-assign]
    if name.startswith("before"):
        if before is None:
            return None
        old_lstm, old_encoder = before
        replaced_lstm = old_lstm.BidirectionalLstm(bilm.options)
        replaced_lstm.load_state_dict(lstm.state_dict())
        replaced_encoder = old_encoder.CharacterEncoder(bilm.options)
        replaced_encoder.load_state_dict(encoder.state_dict())
        bilm.lstm, bilm.char_encoder = replaced_lstm, replaced_encoder
    return bilm, context


def timed_passes(run: Callable[[], Any], passes: int) -> list[float]:
    run()  # warm-up
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def embed_all(embedder: ElmoEmbedder, batch_list: Sequence[Sequence[list[str]]]) -> list[np.ndarray]:
    return [array for batch in batch_list for array in embedder.embed_batch(batch)]


def variants(name: str, args: argparse.Namespace, batch_list: list[Any], n_tokens: int) -> list[dict[str, Any]]:
    options_file, weight_file = model_files(name, args.cache_dir)
    before = load_before_modules(args.before)
    names = [
        "final",
        "no oneDNN",
        "no oneDNN, out-of-place steps",
        "torch.tanh in the cell",
        "input projection per step",
        "no dedup",
        "no window trimming",
        "no dedup, no trimming",
        f"before (git {args.before})",
    ]
    embedders = {}
    for variant_name in names:
        made = variant(load_bilm(options_file, weight_file), variant_name, before)
        if made is not None:
            embedders[variant_name] = (ElmoEmbedder(bilm=made[0]), made[1])
    times: dict[str, list[float]] = {v: [] for v in embedders}
    diffs: dict[str, float] = {}
    for embedder, context in embedders.values():
        with context():
            embed_all(embedder, batch_list[:2])
    reference: list[np.ndarray] = []
    for pass_index in range(args.passes):  # interleaved: a change of machine load hits every variant
        for v, (embedder, context) in embedders.items():
            with context():
                start = time.perf_counter()
                outputs = embed_all(embedder, batch_list)
                times[v].append(time.perf_counter() - start)
            if v == "final":
                reference = outputs
            elif pass_index == 0:
                diffs[v] = max(float(np.abs(a - b).max()) for a, b in zip(outputs, reference, strict=True) if a.size)
    final_median = statistics.median(times["final"])
    rows = []
    for v in embedders:
        median = statistics.median(times[v])
        rows.append(
            {
                "config": name,
                "variant": v,
                "tokens_per_s": n_tokens / median,
                "time_vs_final": median / final_median,
                "max_abs_diff_vs_final": diffs.get(v, 0.0),
            }
        )
        log(f"{name} {v}: {n_tokens / median:.0f} tok/s")
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

    def timed(part: str, forward: Callable[..., Any]) -> Callable[..., Any]:
        def run(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            result = forward(*a, **k)
            spent[part] += time.perf_counter() - start
            return result

        return run

    embedder.bilm.char_encoder.forward = timed("char_encoder", embedder.bilm.char_encoder.forward)  # type: ignore[method-assign]
    embedder.bilm.lstm.forward = timed("lstm", embedder.bilm.lstm.forward)  # type: ignore[method-assign]
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
        t = timed_passes(lambda: embed_all(embedder, batch_list), args.passes)
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
        t = timed_passes(lambda: embed_all(embedder, batch_list), args.passes)
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
        times[k] = timed_passes(run, args.passes)
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
    """``CharacterEncoder.cache_tokens`` with the most frequent Brown words, against no cache."""
    options_file, weight_file = model_files(name, args.cache_dir)
    counts = Counter(token for sentence in brown_sentences() for token in sentence)
    settings: dict[str, ElmoEmbedder] = {}
    fills: dict[str, float] = {}
    for size in (0, 10_000, 50_000):
        embedder = ElmoEmbedder(options_file, weight_file)
        label = f"top {size} words" if size else "no cache"
        if size:
            words = [word for word, _ in counts.most_common(size)]
            encoder = embedder.bilm.char_encoder
            encoder.cache_tokens(batch_to_ids([[word] for word in words])[:, 0])
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
        rows.append(
            {
                "config": name,
                "cache": label,
                "tokens_per_s": n_tokens / median,
                "speedup": base / median,
                "distinct_token_hit_rate": cache.hits / max(1, cache.hits + cache.misses) if cache else None,
                "fill_seconds": fills.get(label),
                "cache_mb": (cache.vectors.numel() * cache.vectors.element_size() / 2**20)
                if cache and cache.vectors is not None
                else 0.0,
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
            ["config", "variant", "tokens/s", "time vs final", "max abs diff vs final"],
            [
                [
                    r["config"],
                    r["variant"],
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
                    f"{r['cache_mb']:.0f}",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="small,original")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=0, help="batches of 32 per pass (default 16 small, 6 original)")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--before", default=BEFORE, help="git revision of the 'before' variant")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--only", default="variants,grad_modes,breakdown,settings,length_aware,token_cache")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    only = set(args.only.split(","))
    sentences = sample_sentences(4096)
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
        n_batches = args.batches or {"small": 16, "original": 6}.get(name, 6)
        chosen = sentences[: 32 * n_batches]
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
