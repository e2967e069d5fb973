"""Would int8 quantization of the LSTM products pay off on CPU? torchao int8 vs bf16, per product.

Times the matrix products of one LSTM time step of ELMo "original" (cell 4096, projection 512) and
"small" (cell 1024, projection 128), plus the input projection of a 512-row block, for:

* ``fp32_linear``: ``torch.nn.functional.linear`` in float32 (the baseline);
* ``bf16_linear``: the same with bfloat16 weight and input;
* ``bf16_onednn`` / ``fp32_onednn``: oneDNN pre-packed weights
  (``mkldnn._reorder_linear_weight(w, 32)``, then ``mkldnn._linear_pointwise``);
* ``bf16_compiled``: ``torch.compile`` of a bfloat16 ``nn.Linear`` (freezing on);
* ``int8wo_{bf16,fp32}_eager`` / ``_compiled``: torchao ``Int8WeightOnlyConfig`` on an ``nn.Linear``,
  bfloat16 or float32 activations, eager and under ``torch.compile`` (freezing on: inductor then
  lowers it to ATen's ``_weight_int8pack_mm``);
* ``int8wo_{bf16,fp32}_aten``: that ATen kernel called directly (torch itself, no torchao, no compile);
* ``int8dyn_{bf16,fp32}_eager`` / ``_compiled``: torchao ``Int8DynamicActivationInt8WeightConfig``
  (per-token int8 activations, per-channel int8 weights), eager and compiled;
* with ``--max-autotune``, also ``*_autotune``: compiled with ``mode="max-autotune"`` (inductor's
  C++ GEMM templates).

Compiled variants use ``fullgraph=True, dynamic=False`` and ``torch._inductor.config.freezing``
(weights become constants: needed for the dynamic-quant path to fold the weight's column sums);
their compile time (first call, fresh inductor cache) is recorded. Inductor bakes the thread count
into its kernels, so each thread count compiles anew.

Also ``int8dyn_bf16_manual``: the compiled dynamic-quant path written out in plain torch ops, no
compile (activations quantized per row and shifted to uint8, ``torch._int_mm``, the weight's
precomputed column-sum compensation, rescale), i.e. what the project could call itself.

Each product is timed in two cache states: ``hot`` (the same weight on every call: it stays in L2/L3
when it fits) and ``cold`` (weights from DRAM: a sweep over copies of the variant built on different
weights, together at least ``--pool-mb``; an LSTM step over two directions of a layer of "original"
reads more weight than this machine's 32 MiB L3 holds, at least in bf16). Compiled variants are
not copied (one compile each): their cold calls follow a read of a ``--flush-mb`` buffer, which
also evicts code and interpreter state, so their cold numbers are pessimistic. Variants over
``--slow-factor`` times a cell's fastest are timed hot only. Repetitions are interleaved: every round times every
variant once (a block of calls, the order rotating per round); the table gives the median over
rounds (the minimum is in the JSON). On a shared machine a block is only kept when this process's
threads spent at most ``--max-waited`` of it waiting for a CPU that another process held (from
``/proc/self/task/*/schedstat``); a dirty block is retried a few times, and a cell's median is over
its clean rounds (flagged "contended" when under half were clean). Each cell also waits (a while)
for the other processes to go quiet first, and records the load average and the cores they used.

Accuracy: each variant's output against the float64 product of the float32 inputs, as mean
absolute error / mean absolute value and max absolute error / mean absolute value; inputs
uniform(-1, 1) (hidden states, cell outputs and layer inputs all lie in that range), weights
N(0, 0.05).

Needs torch and torchao only (``_common`` imports no h5py, Flair or allennlp), for a venv with torchao::

    python benchmarks/bench_int8.py [--out benchmarks/results/int8] [--threads 1 2] [--rounds 5]

writes ``<out>.json`` and ``<out>.md`` (after every cell). ``--merge`` keeps the cells of an existing
``<out>.json`` that the run does not measure (to add thread counts or rows in later, quieter runs);
``--render`` only rewrites ``<out>.md`` from ``<out>.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A fresh inductor cache, so that compile times are real and nothing stale is reused.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="bench_int8_inductor_"))

import torch
from _common import RESULTS, cpu_ticks, l3_cache, load_average, markdown_table, other_cpu, publish

DEFAULT_OUT = RESULTS / "int8"
ROWS = (1, 8, 32, 128)
INPUT_PROJECTION_ROWS = 512
PACK_HINT = 32  # the batch-size hint of the oneDNN weight reorder
CPU_FLAGS = ("avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class Product:
    """One ``(rows, in) x (in -> out)`` product of an LSTM."""

    model: str
    name: str
    in_dim: int
    out_dim: int
    rows: int

    @property
    def label(self) -> str:
        return f"{self.model} {self.name} ({self.rows}x{self.in_dim}->{self.out_dim})"


def products(rows: Sequence[int], models: Sequence[str]) -> list[Product]:
    """The products timed: per model, the recurrent and projection products of a step at every
    row count and the input projection of a 512-row block."""
    dims = {"original": (4096, 512), "small": (1024, 128)}
    out: list[Product] = []
    for model in models:
        cell, proj = dims[model]
        out += [Product(model, "recurrent", proj, 4 * cell, r) for r in rows]
        out += [Product(model, "projection", cell, proj, r) for r in rows]
        out.append(Product(model, "input_projection", proj, 4 * cell, INPUT_PROJECTION_ROWS))
    return out


# ----------------------------------------------------------------------------------------------
# Machine and library facts


def torchao_import() -> tuple[Any, list[str]]:
    """Imports torchao, returning the module and the warnings/log messages its import emitted."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(f"{record.name}: {record.getMessage()}")

    handler = Collect(level=logging.WARNING)
    loggers = [logging.getLogger("torchao"), logging.getLogger("torch")]
    saved = [(lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import torchao
            import torchao.quantization
        messages += [f"{w.category.__name__}: {w.message}" for w in caught]
    finally:
        for lg, (propagate, level) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.propagate = propagate
            lg.setLevel(level)
    # Keep later log noise (e.g. inductor's per-compile warnings) out of the output.
    logging.getLogger("torchao").setLevel(logging.ERROR)
    # Paths relative to the venv: the messages go into committed results.
    return torchao, [m.replace(sys.prefix, "<venv>") for m in messages]


def cpu_facts() -> dict[str, Any]:
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.processor()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu_model": model,
        "flags": {flag: flag in flags for flag in CPU_FLAGS},
        "l3_cache": l3_cache(),
        "logical_cpus": os.cpu_count(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def onednn_version() -> str | None:
    for line in torch.__config__.show().splitlines():
        if "MKL-DNN" in line or "oneDNN" in line:
            return line.strip(" -")
    return None


def wait_quiet(max_wait: float, threshold: float) -> float | None:
    """Waits (at most ``max_wait`` seconds) until other processes use under ``threshold`` cores;
    returns their last measured use."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = other_cpu()
        if busy is None or busy < threshold or time.monotonic() >= deadline:
            return None if busy is None else round(busy, 2)
        time.sleep(4.0)


# ----------------------------------------------------------------------------------------------
# Variants


@dataclass
class Variant:
    name: str
    kind: str  # "fp32", "bf16" or "int8"
    compiled: bool
    fn: Callable[[], torch.Tensor]
    compile_s: float | None = None


def _dtype(name: str) -> torch.dtype:
    return torch.bfloat16 if "_bf16" in name or name.startswith("bf16") else torch.float32


def _linear_module(w: torch.Tensor, dtype: torch.dtype) -> torch.nn.Linear:
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=dtype)
    lin.weight.data.copy_(w.to(dtype))
    return lin


def _compile(module: torch.nn.Module, x: torch.Tensor, mode: str | None) -> tuple[Callable[[], torch.Tensor], float]:
    compiled = torch.compile(module, fullgraph=True, dynamic=False, mode=mode)
    start = time.perf_counter()
    compiled(x)
    return (lambda: compiled(x)), time.perf_counter() - start


def _int8_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-row int8 weights and float32 scales (what torchao's PerRow gives)."""
    scale = w.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).eps) / 127
    return torch.round(w / scale[:, None]).clamp(-128, 127).to(torch.int8).contiguous(), scale


def _int8_dynamic_u8s8(
    x: torch.Tensor, q_t: torch.Tensor, w_scale: torch.Tensor, compensation: torch.Tensor
) -> torch.Tensor:
    """torchao's CPU int8 x int8 path (``_int_scaled_matmul_cpu``, u8s8 for VNNI without AMX) in
    plain torch ops, with the weight's column sums precomputed as inductor's freezing does: per-row
    symmetric int8 activations shifted to uint8, ``torch._int_mm``, compensation, rescale."""
    xf = x.float()
    x_scale = xf.abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).eps) / 127
    xq = (torch.round(xf / x_scale) + 128).clamp(0, 255).to(torch.uint8)
    acc = torch._int_mm(xq, q_t)
    acc.sub_(compensation)
    return (acc.float() * (x_scale * w_scale)).to(x.dtype)


def build_variant(name: str, w: torch.Tensor, x32: torch.Tensor) -> Variant:
    """``name``'s callable for weight ``w`` ``(out, in)`` and input ``x32`` ``(rows, in)``, both float32."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    dtype = _dtype(name)
    x = x32.to(dtype)
    mode = "max-autotune" if name.endswith("_autotune") else None
    compiled = name.endswith(("_compiled", "_autotune"))
    float_kind = "fp32" if dtype == torch.float32 else "bf16"
    if name in ("fp32_linear", "bf16_linear"):
        wd = w.to(dtype).contiguous()
        return Variant(name, float_kind, False, lambda: torch.nn.functional.linear(x, wd))
    if name in ("fp32_onednn", "bf16_onednn"):
        packed = torch.ops.mkldnn._reorder_linear_weight(w.to(dtype).contiguous(), PACK_HINT)
        return Variant(
            name, float_kind, False, lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
        )
    if name.startswith("bf16_compiled") or name.startswith("bf16_autotune"):
        fn, seconds = _compile(_linear_module(w, dtype), x, mode)
        return Variant(name, "bf16", True, fn, seconds)
    if name.startswith("int8wo_") and name.endswith("_aten"):
        q, scale = _int8_rows(w)
        scale = scale.to(dtype)
        return Variant(name, "int8", False, lambda: torch.ops.aten._weight_int8pack_mm(x, q, scale))
    if name.startswith("int8dyn_") and name.endswith("_manual"):
        q, w_scale = _int8_rows(w)
        q_t = q.t()  # (in, out) view of the row-major weight: the layout oneDNN's u8s8 kernel takes fastest
        compensation = q.sum(dim=1, dtype=torch.int32) * 128
        return Variant(name, "int8", False, lambda: _int8_dynamic_u8s8(x, q_t, w_scale, compensation))
    if name.startswith(("int8wo_", "int8dyn_")):
        config = Int8WeightOnlyConfig() if name.startswith("int8wo_") else Int8DynamicActivationInt8WeightConfig()
        module = _linear_module(w, dtype)
        quantize_(module, config)
        if not compiled:
            return Variant(name, "int8", False, lambda: module(x))
        fn, seconds = _compile(module, x, mode)
        return Variant(name, "int8", True, fn, seconds)
    raise ValueError(f"unknown variant {name}")


LEGEND = {
    "fp32_linear": "F.linear, float32",
    "fp32_onednn": "oneDNN pre-packed weight, float32",
    "bf16_linear": "F.linear, bfloat16 weight and input",
    "bf16_onednn": "oneDNN pre-packed weight, bfloat16",
    "bf16_compiled": "torch.compile of a bfloat16 nn.Linear (freezing)",
    "int8wo_*_eager": "torchao Int8WeightOnlyConfig, eager (dequantizes the whole weight every call)",
    "int8wo_*_compiled": "the same under torch.compile (freezing): inductor calls aten._weight_int8pack_mm",
    "int8wo_*_aten": "aten._weight_int8pack_mm called directly (torch, no torchao, no compile)",
    "int8dyn_*_eager": "torchao Int8DynamicActivationInt8WeightConfig, eager (recomputes the weight's column "
    "sums every call)",
    "int8dyn_*_compiled": "the same under torch.compile (freezing): fused activation quantization + "
    "torch._int_mm (oneDNN u8s8) with the column sums folded",
    "int8dyn_bf16_manual": "that compiled path in plain torch ops, no compile (torch._int_mm on uint8-shifted "
    "activations, precomputed compensation)",
    "*_autotune": "compiled with mode='max-autotune'",
}

BASE_VARIANTS = (
    "fp32_linear",
    "fp32_onednn",
    "bf16_linear",
    "bf16_onednn",
    "bf16_compiled",
    "int8wo_bf16_eager",
    "int8wo_bf16_compiled",
    "int8wo_bf16_aten",
    "int8wo_fp32_eager",
    "int8wo_fp32_aten",
    "int8dyn_bf16_eager",
    "int8dyn_bf16_compiled",
    "int8dyn_fp32_eager",
    "int8dyn_fp32_compiled",
    "int8dyn_bf16_manual",
)
EXTRA_VARIANTS = ("int8wo_fp32_compiled",)  # measured once: no faster than eager fp32 x int8 (about 4 ms)
AUTOTUNE_VARIANTS = ("bf16_autotune", "int8wo_bf16_autotune", "int8dyn_bf16_autotune")


# ----------------------------------------------------------------------------------------------
# Measurement


def accuracy(y: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    err = (y.double() - reference).abs()
    scale = reference.abs().mean().item()
    return {"rel_mean": err.mean().item() / scale, "rel_max": err.max().item() / scale}


class Flusher:
    """Evicts the caches by reading a buffer larger than them (read only: no dirty lines)."""

    def __init__(self, megabytes: int) -> None:
        self.buffer = torch.rand(megabytes * 2**20 // 4)
        self.sink = 0.0

    def __call__(self) -> None:
        self.sink += float(self.buffer.sum())


def run_queue_wait_ns() -> int:
    """Nanoseconds this process's threads have spent runnable but not running (waiting for a CPU
    another process held): /proc/self/task/*/schedstat. 0 where that is missing."""
    total = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            total += int(Path(f"/proc/self/task/{task}/schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total


@dataclass
class Sample:
    seconds: float  # per call
    waited: float  # run-queue wait of our threads / wall time of the block
    attempts: int


def clean_sample(measure: Callable[[], float], max_waited: float, retries: int) -> Sample:
    """``measure()``, repeated (up to ``retries`` times, pausing between tries) while our threads
    spent more than ``max_waited`` of the block waiting for a CPU held by another process: on a
    shared machine such blocks measure the other process, not the kernel."""
    for attempt in range(1, retries + 1):
        wait_start, start = run_queue_wait_ns(), time.perf_counter()
        seconds = measure()
        waited = (run_queue_wait_ns() - wait_start) / 1e9 / (time.perf_counter() - start)
        if waited <= max_waited or attempt == retries:
            return Sample(seconds, waited, attempt)
        time.sleep(0.02)
    raise AssertionError("unreachable")


def summarize_samples(samples: list[Sample], max_waited: float) -> dict[str, Any]:
    """Median (and minimum) over the clean samples when at least half the rounds are clean, else
    over all, flagged as contended."""
    if not samples:
        return {"ms": None, "ms_min": None, "clean": 0, "contended": None}
    clean = [s.seconds for s in samples if s.waited <= max_waited]
    use = clean if 2 * len(clean) >= len(samples) else [s.seconds for s in samples]
    return {
        "ms": statistics.median(use) * 1e3,
        "ms_min": min(s.seconds for s in samples) * 1e3,
        "clean": len(clean),
        "contended": use is not clean,
        "attempts": sum(s.attempts for s in samples),
    }


def time_hot(fn: Callable[[], torch.Tensor], calls: int) -> float:
    """Seconds per call of ``calls`` back-to-back calls on the same weight."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def time_cold(pool: Sequence[Callable[[], torch.Tensor]], flush: Flusher, calls: int) -> float:
    """Seconds per call with the weight out of the caches: one sweep over ``pool`` (copies of the
    variant on different weights, together larger than the caches), or for a pool of one (compiled
    variants), the median of ``calls`` single calls each after a cache flush."""
    if len(pool) > 1:
        start = time.perf_counter()
        for fn in pool:
            fn()
        return (time.perf_counter() - start) / len(pool)
    times = []
    for _ in range(calls):
        flush()
        start = time.perf_counter()
        pool[0]()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


WEIGHT_BYTES = {"fp32": 4, "bf16": 2, "int8": 1}


def measure_cell(
    product: Product,
    threads: int,
    variant_names: Sequence[str],
    rounds: int,
    hot_block_ms: float,
    cold_calls: int,
    flush: Flusher,
    pool_mb: int,
    max_copies: int,
    slow_factor: float,
    max_waited: float,
    retries: int,
    max_wait: float,
    quiet_threshold: float,
    want_accuracy: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    torch.set_num_threads(threads)
    torch._dynamo.reset()
    generator = torch.Generator().manual_seed(zlib.crc32(f"{product.model}/{product.name}".encode()))
    shape = (product.out_dim, product.in_dim)
    w = torch.randn(shape, generator=generator) * 0.05
    x = torch.rand(product.rows, product.in_dim, generator=generator) * 2 - 1
    reference = x.double() @ w.double().T
    other_before = wait_quiet(max_wait, quiet_threshold)
    load_before = load_average()

    variants: list[Variant] = []
    errors: dict[str, str] = {}
    for name in variant_names:
        try:
            variants.append(build_variant(name, w, x))
        except Exception as exc:  # a variant that does not run here is reported, not fatal
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"

    accuracy_rows = []
    estimates: dict[str, float] = {}
    for v in variants:
        y = v.fn()
        if want_accuracy:
            accuracy_rows.append({**_cell_keys(product), "variant": v.name, "kind": v.kind, **accuracy(y, reference)})
        v.fn()
        estimates[v.name] = min(time_hot(v.fn, 1) for _ in range(3))  # the minimum: robust to preemption
    calls = {name: max(1, min(200, round(hot_block_ms / 1e3 / est))) for name, est in estimates.items()}
    fastest = min(estimates.values(), default=0.0)
    # Variants far slower than the fastest are compute bound, out of the race: timed hot only.
    cold_variants = [v for v in variants if estimates[v.name] <= slow_factor * fastest]
    pools: dict[str, list[Callable[[], torch.Tensor]]] = {}
    for v in cold_variants:
        pools[v.name] = [v.fn]
        if not v.compiled:  # copies on other weights, for the cold sweep
            size = product.in_dim * product.out_dim * WEIGHT_BYTES[v.kind]
            copies = min(max_copies, max(2, math.ceil(pool_mb * 2**20 / size)))
            for _ in range(copies - 1):
                fn = build_variant(v.name, torch.randn(shape, generator=generator) * 0.05, x).fn
                fn()  # warm (oneDNN creates its primitives on first use)
                pools[v.name].append(fn)

    samples: dict[tuple[str, str], list[Sample]] = {(v.name, c): [] for v in variants for c in ("hot", "cold")}
    ticks_start, wall_start = cpu_ticks(), time.monotonic()
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)] if variants else []
        for v in order:
            hot = clean_sample(lambda v=v: time_hot(v.fn, calls[v.name]), max_waited, retries)
            samples[v.name, "hot"].append(hot)
        for v in order:
            if v.name in pools:
                cold = clean_sample(lambda v=v: time_cold(pools[v.name], flush, cold_calls), max_waited, retries)
                samples[v.name, "cold"].append(cold)
    ticks_end, wall_end = cpu_ticks(), time.monotonic()
    load_after = load_average()
    others = (ticks_end[0] - ticks_start[0]) - (ticks_end[1] - ticks_start[1])
    other_during = round(max(0, others) / os.sysconf("SC_CLK_TCK") / (wall_end - wall_start), 2)

    rows = []
    for v in variants:
        hot = summarize_samples(samples[v.name, "hot"], max_waited)
        cold = summarize_samples(samples[v.name, "cold"], max_waited)
        rows.append(
            {
                **_cell_keys(product),
                "threads": threads,
                "variant": v.name,
                "kind": v.kind,
                "compiled": v.compiled,
                "compile_s": None if v.compile_s is None else round(v.compile_s, 2),
                **{f"hot_{key}": value for key, value in hot.items()},
                **{f"cold_{key}": value for key, value in cold.items()},
                "cold_method": None
                if v.name not in pools
                else "flush"
                if len(pools[v.name]) == 1
                else f"sweep over {len(pools[v.name])} copies",
                "hot_calls_per_block": calls[v.name],
                "rounds": rounds,
                "load_before": load_before,
                "load_after": load_after,
                "other_cpu_before": other_before,
                "other_cpu_during": other_during,
            }
        )
    for name, message in errors.items():
        rows.append({**_cell_keys(product), "threads": threads, "variant": name, "error": message})
    return rows, accuracy_rows


def _cell_keys(product: Product) -> dict[str, Any]:
    return {
        "model": product.model,
        "product": product.name,
        "rows": product.rows,
        "in_dim": product.in_dim,
        "out_dim": product.out_dim,
    }


# ----------------------------------------------------------------------------------------------
# Summary and output


def _best(rows: list[dict[str, Any]], cache: str, pick: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    candidates = [r for r in rows if "error" not in r and r[f"{cache}_ms"] is not None and pick(r)]
    return min(candidates, key=lambda r: r[f"{cache}_ms"]) if candidates else None


def is_torchao(variant: str) -> bool:
    """A torchao variant (``quantize_`` on an ``nn.Linear``), not one of the plain-torch kernels."""
    return variant.startswith(("int8wo_", "int8dyn_")) and not variant.endswith(("_aten", "_manual"))


_ORDER = {"original": 0, "small": 1, "recurrent": 0, "projection": 1, "input_projection": 2, "hot": 0, "cold": 1}


def cell_order(key: tuple) -> tuple:
    """Sort key of ``(threads, model, product, rows[, cache])``: most threads first."""
    threads, model, product, rows, *cache = key
    return (-threads, _ORDER[model], _ORDER[product], rows, *(_ORDER[c] for c in cache))


def summarize(results: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """Per cell and cache state: the best bf16 and best int8 variants (any; torchao's own; and
    without torch.compile) and bf16 time / int8 time."""
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        cells.setdefault((r["threads"], r["model"], r["product"], r["rows"]), []).append(r)
    out = []
    for (threads, model, product, rows), cell in sorted(cells.items(), key=lambda item: cell_order(item[0])):
        for cache in ("hot", "cold"):
            bf16 = _best(cell, cache, lambda r: r["kind"] == "bf16")
            int8 = _best(cell, cache, lambda r: r["kind"] == "int8")
            int8_eager = _best(cell, cache, lambda r: r["kind"] == "int8" and not r["compiled"])
            torchao = _best(cell, cache, lambda r: is_torchao(r["variant"]))
            fp32 = _best(cell, cache, lambda r: r["kind"] == "fp32")
            if bf16 is None or int8 is None:
                continue
            speedup = bf16[f"{cache}_ms"] / int8[f"{cache}_ms"]
            out.append(
                {
                    "threads": threads,
                    "cache": cache,
                    "model": model,
                    "product": product,
                    "rows": rows,
                    "fp32_best": fp32 and fp32["variant"],
                    "fp32_best_ms": fp32 and fp32[f"{cache}_ms"],
                    "bf16_best": bf16["variant"],
                    "bf16_best_ms": bf16[f"{cache}_ms"],
                    "int8_best": int8["variant"],
                    "int8_best_ms": int8[f"{cache}_ms"],
                    "int8_speedup_vs_bf16": speedup,
                    "torchao_best": torchao and torchao["variant"],
                    "torchao_best_ms": torchao and torchao[f"{cache}_ms"],
                    "torchao_speedup_vs_bf16": torchao and bf16[f"{cache}_ms"] / torchao[f"{cache}_ms"],
                    "int8_no_compile_best": int8_eager and int8_eager["variant"],
                    "int8_no_compile_speedup_vs_bf16": int8_eager and bf16[f"{cache}_ms"] / int8_eager[f"{cache}_ms"],
                    "meets_threshold": speedup >= threshold,
                    "clean_samples": [bf16[f"{cache}_clean"], int8[f"{cache}_clean"]],
                    "contended": bool(bf16[f"{cache}_contended"] or int8[f"{cache}_contended"]),
                    "load_before": bf16["load_before"],
                    "load_after": bf16["load_after"],
                    "other_cpu_before": bf16["other_cpu_before"],
                    "other_cpu_during": bf16["other_cpu_during"],
                }
            )
    return out


def _ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def markdown(report: dict[str, Any]) -> str:
    meta, results, summary, acc = report["meta"], report["results"], report["summary"], report["accuracy"]
    flags = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in meta["cpu"]["flags"].items())
    parts = [
        "# int8 (torchao) vs bf16 for the LSTM products",
        "",
        f"torch {meta['torch']}, torchao {meta['torchao']}, {meta['onednn']}; CPU {meta['cpu']['cpu_model']} "
        f"({meta['cpu']['logical_cpus']} logical CPUs, L3 {meta['cpu']['l3_cache']}; {flags}); "
        f"threads {meta['threads']}; {meta['rounds']} interleaved rounds, median. Hot: the same weight on every "
        f"call. Cold: a sweep over copies of the variant on different weights, together >= {meta['pool_mb']} MiB "
        f"(at most {meta['max_copies']} copies); compiled variants (one copy) instead read {meta['flush_mb']} MiB "
        "before each call, which also evicts code and interpreter state: pessimistic for small products. "
        f"A timed block counts as clean when this process's threads waited for a CPU (held by another "
        f"process) at most {meta['max_waited']:.0%} of it; a dirty block is retried (up to {meta['retries']} "
        "tries); medians are over the clean rounds when at least half are clean, else over all (contended). "
        f"Load average at start {meta['load_start']}, "
        f"end {meta['load_end']}. Compiled: torch.compile(fullgraph, dynamic=False) with inductor freezing.",
        "",
        "## Summary: best bf16 vs best int8 (ms per product)",
        "",
        f"Speedup = best bf16 time / best int8 time; threshold {meta['threshold']}x.",
        "",
    ]
    header = [
        "threads",
        "cache",
        "product",
        "rows",
        "fp32 best",
        "bf16 best",
        "int8 best",
        "int8/bf16 speedup",
        "torchao best: speedup",
        "int8 w/o compile: speedup",
        ">= threshold",
        "clean rounds bf16/int8",
        "load avg 1 min (cores used by others: before, during)",
    ]
    parts.append(
        markdown_table(
            header,
            [
                [
                    s["threads"],
                    s["cache"],
                    f"{s['model']} {s['product']}",
                    s["rows"],
                    f"{_ms(s['fp32_best_ms'])} ({s['fp32_best']})",
                    f"{_ms(s['bf16_best_ms'])} ({s['bf16_best']})",
                    f"{_ms(s['int8_best_ms'])} ({s['int8_best']})",
                    f"{s['int8_speedup_vs_bf16']:.2f}",
                    "-"
                    if s["torchao_speedup_vs_bf16"] is None
                    else f"{s['torchao_best']} {_ms(s['torchao_best_ms'])}: {s['torchao_speedup_vs_bf16']:.2f}",
                    "-"
                    if s["int8_no_compile_speedup_vs_bf16"] is None
                    else f"{s['int8_no_compile_best']}: {s['int8_no_compile_speedup_vs_bf16']:.2f}",
                    ("yes" if s["meets_threshold"] else "no") + (" (contended)" if s["contended"] else ""),
                    "{}/{}".format(*s["clean_samples"]),
                    f"{s['load_before'][0]}->{s['load_after'][0]} ({s['other_cpu_before']}, {s['other_cpu_during']})",
                ]
                for s in summary
            ],
        )
    )
    parts += ["", "Variants (`*`: bf16 or fp32 activations):", ""]
    parts += [f"- `{name}`: {text}" for name, text in LEGEND.items()]
    variants = list(dict.fromkeys(r["variant"] for r in results))
    by_key = {(r["threads"], r["model"], r["product"], r["rows"], r["variant"]): r for r in results}
    cells = sorted({(r["threads"], r["model"], r["product"], r["rows"]) for r in results}, key=cell_order)
    for cache in ("hot", "cold"):
        parts += [
            "",
            f"## All variants, {cache} cache (ms per product, median)",
            "",
            "`-`: not timed (cold: over the slow factor); `*`: fewer than half the rounds were clean.",
            "",
        ]
        table_rows = []
        for threads, model, product, rows in cells:
            row: list[Any] = [threads, f"{model} {product}", rows]
            for v in variants:
                r = by_key.get((threads, model, product, rows, v))
                if r is None:
                    row.append("-")
                elif "error" in r:
                    row.append("err")
                else:
                    row.append(_ms(r[f"{cache}_ms"]) + ("*" if r[f"{cache}_contended"] else ""))
            table_rows.append(row)
        parts.append(markdown_table(["threads", "product", "rows", *variants], table_rows))
    parts += ["", "## Accuracy vs float64 (mean abs err / mean abs value; max abs err / mean abs value)", ""]
    acc_variants = list(dict.fromkeys(a["variant"] for a in acc))
    acc_by = {(a["model"], a["product"], a["rows"], a["variant"]): a for a in acc}
    acc_cells = sorted({(a["model"], a["product"], a["rows"]) for a in acc}, key=lambda c: cell_order((0, *c)))
    parts.append(
        markdown_table(
            ["product", "rows", *acc_variants],
            [
                [f"{m} {p}", rows]
                + [
                    "-"
                    if (m, p, rows, v) not in acc_by
                    else f"{acc_by[m, p, rows, v]['rel_mean']:.1e} / {acc_by[m, p, rows, v]['rel_max']:.1e}"
                    for v in acc_variants
                ]
                for m, p, rows in acc_cells
            ],
        )
    )
    compile_rows = [r for r in results if r.get("compile_s") is not None]
    if compile_rows:
        seconds = [r["compile_s"] for r in compile_rows]
        parts += [
            "",
            f"Compile time (first call, fresh cache): median {statistics.median(seconds):.1f} s, "
            f"max {max(seconds):.1f} s over {len(seconds)} compiles.",
        ]
    errors = [r for r in results if "error" in r]
    if errors:
        parts += ["", "## Variants that failed", ""]
        parts += [f"- {r['variant']} ({r['model']} {r['product']} rows {r['rows']}): {r['error']}" for r in errors]
    if meta["torchao_import_messages"]:
        parts += ["", "## Messages at torchao import", ""]
        parts += [f"- {m}" for m in meta["torchao_import_messages"]]
    return "\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output path without suffix")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS))
    parser.add_argument("--models", nargs="+", default=["original", "small"], choices=["original", "small"])
    parser.add_argument("--products", nargs="+", default=["recurrent", "projection", "input_projection"])
    parser.add_argument("--variants", nargs="+", default=None, help="subset of variants (default: all)")
    parser.add_argument("--max-autotune", action="store_true", help="add mode='max-autotune' compiled variants")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hot-block-ms", type=float, default=4.0, help="target length of a hot block of calls")
    parser.add_argument("--cold-calls", type=int, default=3, help="flushed calls per cold block")
    parser.add_argument("--flush-mb", type=int, default=128, help="cache flush read before a cold compiled call")
    parser.add_argument("--pool-mb", type=int, default=96, help="weight copies swept per cold block (3x a 32 MiB L3)")
    parser.add_argument("--max-copies", type=int, default=512)
    parser.add_argument(
        "--slow-factor", type=float, default=6.0, help="variants this much slower than a cell's fastest: hot only"
    )
    parser.add_argument(
        "--max-waited",
        type=float,
        default=0.05,
        help="a timed block is clean when our threads waited for a CPU at most this fraction of it",
    )
    parser.add_argument("--retries", type=int, default=4, help="tries per timed block to get a clean one")
    parser.add_argument("--max-wait", type=float, default=20.0, help="seconds to wait per cell for a quiet machine")
    parser.add_argument(
        "--quiet-threshold", type=float, default=0.3, help="cores used by others below which the machine is quiet"
    )
    parser.add_argument("--threshold", type=float, default=1.3)
    parser.add_argument(
        "--merge", action="store_true", help="keep the cells of an existing <out>.json that this run does not measure"
    )
    parser.add_argument("--render", action="store_true", help="only rewrite <out>.md (and the summary) from <out>.json")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads(Path(f"{args.out}.json").read_text())
        report["summary"] = summarize(report["results"], report["meta"]["threshold"])
        publish(args.out.parent, args.out.name, report, markdown(report), echo=False)
        return 0

    torch.set_grad_enabled(False)
    torchao, messages = torchao_import()
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    torch._dynamo.config.recompile_limit = 64

    variant_names = list(args.variants or BASE_VARIANTS + (AUTOTUNE_VARIANTS if args.max_autotune else ()))
    flush = Flusher(args.flush_mb)
    meta = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchao": torchao.__version__,
        "onednn": onednn_version(),
        "cpu": cpu_facts(),
        "threads": args.threads,
        "interop_threads": torch.get_num_interop_threads(),
        "rounds": args.rounds,
        "hot_block_ms": args.hot_block_ms,
        "cold_calls": args.cold_calls,
        "flush_mb": args.flush_mb,
        "pool_mb": args.pool_mb,
        "max_copies": args.max_copies,
        "slow_factor": args.slow_factor,
        "max_waited": args.max_waited,
        "retries": args.retries,
        "max_wait_s": args.max_wait,
        "quiet_threshold_cores": args.quiet_threshold,
        "threshold": args.threshold,
        "variants": variant_names,
        "inductor": {"freezing": True, "dynamic": False, "fullgraph": True},
        "inductor_cache_dir": os.environ["TORCHINDUCTOR_CACHE_DIR"],
        "torchao_import_messages": messages,
        "load_start": load_average(),
    }
    previous = None
    if args.merge and Path(f"{args.out}.json").exists():
        previous = json.loads(Path(f"{args.out}.json").read_text())
    results: list[dict[str, Any]] = []
    accuracy_rows: list[dict[str, Any]] = []
    cells = [p for p in products(args.rows, args.models) if p.name in args.products]
    started = time.perf_counter()
    for i, threads in enumerate(args.threads):
        for product in cells:
            rows, acc = measure_cell(
                product,
                threads,
                variant_names,
                args.rounds,
                args.hot_block_ms,
                args.cold_calls,
                flush,
                args.pool_mb,
                args.max_copies,
                args.slow_factor,
                args.max_waited,
                args.retries,
                args.max_wait,
                args.quiet_threshold,
                want_accuracy=i == 0,
            )
            results += rows
            accuracy_rows += acc
            timed = {r["variant"]: r for r in rows if "error" not in r}
            brief = ", ".join(f"{v}={_ms(timed[v]['hot_ms'])}/{_ms(timed[v]['cold_ms'])}" for v in timed)
            print(
                f"[{time.perf_counter() - started:6.0f}s] t={threads} {product.label} load={load_average()} "
                f"hot/cold ms: {brief}",
                flush=True,
            )
            save(args.out, meta, results, accuracy_rows, previous, args.threshold, started)
    report = save(args.out, meta, results, accuracy_rows, previous, args.threshold, started)
    print(markdown(report))
    return 0


def _cell(r: dict[str, Any]) -> tuple:
    return (r.get("threads"), r["model"], r["product"], r["rows"])


def save(
    out: Path,
    meta: dict[str, Any],
    results: list[dict[str, Any]],
    accuracy_rows: list[dict[str, Any]],
    previous: dict[str, Any] | None,
    threshold: float,
    started: float,
) -> dict[str, Any]:
    """Writes ``<out>.json`` and ``<out>.md`` (after every cell, so that an interrupted run keeps
    what it measured). With ``previous`` (``--merge``), its cells not measured in this run are kept."""
    meta = {**meta, "load_end": load_average(), "wall_s": round(time.perf_counter() - started, 1)}
    if previous is not None:
        cells = {_cell(r) for r in results}
        acc_cells = {_cell({**a, "threads": None}) for a in accuracy_rows}
        results = [r for r in previous["results"] if _cell(r) not in cells] + results
        accuracy_rows = [
            a for a in previous["accuracy"] if _cell({**a, "threads": None}) not in acc_cells
        ] + accuracy_rows
        last = {k: v for k, v in previous["meta"].items() if k != "earlier_runs"}
        earlier = [*previous["meta"].get("earlier_runs", []), last]
        meta["earlier_runs"] = earlier
        meta["threads"] = sorted({r["threads"] for r in results})
        meta["load_start"] = [run["load_start"] for run in earlier] + [meta["load_start"]]
        meta["load_end"] = [run["load_end"] for run in earlier] + [meta["load_end"]]
    report = {"meta": meta, "summary": summarize(results, threshold), "results": results, "accuracy": accuracy_rows}
    publish(out.parent, out.name, report, markdown(report), echo=False)
    return report


if __name__ == "__main__":
    raise SystemExit(main())
