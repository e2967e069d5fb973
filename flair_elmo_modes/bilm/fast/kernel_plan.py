"""The LSTM kernel plan: which kernel is fastest here, measured where it runs.

Which step kernel is fastest depends on the CPU (MKL's packed GEMM beats oneDNN's on one Intel Xeon
and loses 2x on an AMD EPYC), on the layer's shape, on how many rows a step has, on the threads and
on the precision. So, as ``torch.backends.cudnn.benchmark`` or FFTW's planner do, the first
inference forward of each :class:`Workload` times every candidate kernel
(:func:`~flair_elmo_modes.bilm.fast.kernels.candidates`) on a few steps of that layer with its real
weights, and takes the fastest one that is accurate enough: its float32 error against a float64
evaluation of the same steps is within :data:`ACCURACY_FACTOR` of the precision's plain kernel's,
mean and max (bf16/fp16 kernels are held to the plain bf16/fp16 kernel; float32 kernels serve
every precision).

The plan is kept in memory per process and on disk per machine: a JSON file per machine key
(CPU model and features, ISA limits in the environment, torch version and math libraries) in
``$FLAIR_ELMO_MODES_KERNEL_PLANS`` or ``~/.cache/flair-elmo-modes/kernel-plans``, written
atomically under a file lock, so a machine keeps its choice from run to run and concurrent
processes (Ray workers, torchrun ranks) agree on it: an entry, once written, is never replaced by
another measurement, so every process of a machine takes the same kernels (and computes the same
bits). An entry naming a kernel that cannot run here (an edited or damaged file) is measured again,
never used. An entry measured while other processes competed for the CPUs may have picked a slower
kernel (contention slows memory-bound and compute-bound kernels differently): it is marked
(:func:`provisional`, shown by ``flair-elmo info --system``); delete the plan file to measure again
on a quiet machine. ``fast_paths(planned=False)`` turns
planning off (a fixed rule); batch-invariant mode and ``fast_paths(kernel=...)`` bypass it.

Planning never changes what is computed beyond float32 rounding (every candidate computes the same
step), and a plan entry depends only on the workload, not on the data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import filelock
import torch

from flair_elmo_modes.atomic import atomic_write_json
from flair_elmo_modes.bilm import precision
from flair_elmo_modes.bilm.cpu import cpu_flags, cpu_model
from flair_elmo_modes.bilm.fast import fast_paths
from flair_elmo_modes.bilm.fast.kernels import build_kernel, candidates, kernel_name
from flair_elmo_modes.bilm.lstm_cell import TORCH, Kernel, LayerWeights, TorchKernel

log = logging.getLogger(__name__)

#: A kernel qualifies when its error against float64 is at most this many times the plain
#: kernel's, mean and max over the measured steps (the project's accuracy rule, issue 21).
ACCURACY_FACTOR = 3.0
#: Steps per timed run; timed samples per candidate (after one warm-up run, which also builds the
#: kernel's packed weights), of which the fastest is kept: other processes only ever slow a sample
#: down (a median still followed one that held a core for half the samples); and the least time a
#: sample takes: a sample repeats runs of a fast kernel ("small" at one row: ~0.1 ms) until it does,
#: so that timer resolution and the interpreter's jitter do not decide.
STEPS = 8
REPEATS = 5
MIN_SAMPLE_SECONDS = 0.01
#: Row-count buckets: powers of two up to this; a bucket is timed at its geometric middle.
MAX_BUCKET = 256
#: Where plans are kept (a directory); the default is under ``~/.cache``.
DIRECTORY_VARIABLE = "FLAIR_ELMO_MODES_KERNEL_PLANS"
#: Version of the plan file's layout (a file of another version is replaced).
FORMAT = 1
#: Environment variables that change which instructions the math libraries use.
ISA_VARIABLES = ("MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
#: CPU features that decide the kernels' speed.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "asimd", "sve", "bf16")


@dataclass(frozen=True)
class Workload:
    """What a plan entry is measured for: one LSTM layer shape at one row-count bucket.

    Attributes:
        device: ``"cpu"``, or a CUDA device's name.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        input_dim, cell_dim, projection_dim: the layer's shape.
        rows: the bucket: steps of ``rows`` to ``2 * rows - 1`` rows (powers of two; the last
            bucket, :data:`MAX_BUCKET`, has no upper end).
        threads: torch's intra-op threads.
        clip: whether the layer clips its memory or outputs (the steps' arithmetic).
        candidates: the kernels allowed (``fast_paths`` may narrow them: a narrower set is
            planned apart, so that it never replaces the full set's choice).
    """

    device: str
    precision: str
    input_dim: int
    cell_dim: int
    projection_dim: int
    rows: int
    threads: int
    clip: bool
    candidates: tuple[str, ...]

    @property
    def key(self) -> str:
        return (
            f"{self.device}|{self.precision}|{self.input_dim}x{self.cell_dim}x{self.projection_dim}"
            f"|rows{self.rows}|threads{self.threads}|clip{int(self.clip)}|{','.join(self.candidates)}"
        )

    @property
    def timed_rows(self) -> int:
        """The rows a step is timed at: the bucket's geometric middle (1 for the 1-row bucket)."""
        return self.rows if self.rows == 1 else round(self.rows * 2**0.5)


def rows_bucket(rows: int) -> int:
    """The power of two at most ``rows`` (at least 1), capped at :data:`MAX_BUCKET`."""
    return min(1 << (max(rows, 1).bit_length() - 1), MAX_BUCKET)


def workload(layer: LayerWeights, like: torch.Tensor, batch: int, usable: list[str]) -> Workload:
    """The workload of ``layer`` in a forward of ``batch`` rows on tensors like ``like``, choosing
    among the kernels ``usable``."""
    device = "cpu" if like.device.type == "cpu" else torch.cuda.get_device_name(like.device)
    return Workload(
        device=device,
        precision=precision.current() if precision.product_dtype(like) is not None else "fp32",
        input_dim=layer.input_dim,
        cell_dim=layer.cell_dim,
        projection_dim=layer.projection_dim,
        rows=rows_bucket(batch),
        threads=torch.get_num_threads(),
        clip=bool(layer.cell_clip or layer.proj_clip),
        candidates=tuple(usable),
    )


def machine() -> dict[str, Any]:
    """What a plan on disk is kept for: a different entry of this dict is a different machine."""
    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "flags": None if flags is None else sorted(flag for flag in KERNEL_FLAGS if flag in flags),
        "torch": torch.__version__,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "mkl": torch.backends.mkl.is_available(),
        "onednn": torch.backends.mkldnn.is_available(),
        "environment": {name: os.environ[name] for name in ISA_VARIABLES if name in os.environ},
    }


def plan_directory() -> Path:
    """``$FLAIR_ELMO_MODES_KERNEL_PLANS``, else ``$XDG_CACHE_HOME/flair-elmo-modes/kernel-plans``
    (``~/.cache/...`` by default)."""
    if os.environ.get(DIRECTORY_VARIABLE):
        return Path(os.environ[DIRECTORY_VARIABLE])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "flair-elmo-modes" / "kernel-plans"


def plan_file() -> Path:
    """This machine's plan file: named by a hash of :func:`machine`."""
    digest = hashlib.sha256(json.dumps(machine(), sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return plan_directory() / f"{digest}.json"


@dataclass(frozen=True)
class Measurement:
    """One candidate kernel measured on a workload.

    Attributes:
        seconds: the fastest sample's seconds per run (:data:`STEPS` steps and their input projections).
        mean_error, max_error: absolute error of the run's outputs against float64.
        qualifies: within :data:`ACCURACY_FACTOR` of the plain kernel's errors.
    """

    seconds: float
    mean_error: float
    max_error: float
    qualifies: bool


def read_plan(path: Path) -> dict[str, dict[str, Any]]:
    """The entries of the plan file ``path`` (empty when missing; a damaged or other-format file
    is reported in the log and counts as empty: its workloads are measured again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log.warning("kernel plan %s is unreadable (%s): measuring again", path, error)
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
        log.warning("kernel plan %s is not a format-%d plan: measuring again", path, FORMAT)
        return {}
    return data["entries"]


class KernelPlan:
    """The plan of this process: entries by :attr:`Workload.key`, read from and written to
    :func:`plan_file` (see the module doc)."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._unwritable = False  # warned that the file cannot be written

    def clear(self) -> None:
        """Forget the entries of this process (the file stays)."""
        with self._lock:
            self._entries.clear()

    def entries(self) -> dict[str, dict[str, Any]]:
        """This process's entries, and the file's."""
        return {**read_plan(plan_file()), **self._entries}

    def kernel(self, layer: LayerWeights, like: torch.Tensor, batch: int, usable: list[str], block_rows: int) -> str:
        """The planned kernel for ``layer`` in a forward of ``batch`` rows (measured if new, with
        input projections of ``block_rows`` rows at a time)."""
        work = workload(layer, like, batch, usable)
        entry = self._entries.get(work.key)
        if entry is not None and entry.get("kernel") in usable:
            return entry["kernel"]
        with self._lock:
            path = plan_file()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with filelock.FileLock(str(path) + ".lock"):
                    entry = self._measure_into(path, layer, like, work, usable, block_rows)
            except OSError as error:  # a read-only or full disk: plan in memory, for this process only
                if not self._unwritable:
                    log.warning("kernel plan %s cannot be kept on disk (%s): planning in memory", path, error)
                self._unwritable = True
                entry = self._entries.get(work.key) or measure(layer, like, work, usable, block_rows)
            self._entries[work.key] = entry
        return entry["kernel"]

    def _measure_into(
        self, path: Path, layer: LayerWeights, like: torch.Tensor, work: Workload, usable: list[str], block_rows: int
    ) -> dict[str, Any]:
        """The file's entry for ``work``, measured and written first when it has none (or a
        kernel that cannot run here). The caller holds the file's lock."""
        on_disk = read_plan(path)
        entry = on_disk.get(work.key)
        if not (isinstance(entry, dict) and entry.get("kernel") in usable):
            entry = on_disk[work.key] = self._entries[work.key] = measure(layer, like, work, usable, block_rows)
            atomic_write_json(path, {"format": FORMAT, "machine": machine(), "entries": on_disk})
        return entry


PLAN = KernelPlan()


def choose_kernel(layer: LayerWeights, inputs: torch.Tensor, batch: int, grad: bool, block_rows: int) -> Kernel:
    """The kernel for ``layer`` in one forward: the plan's where planning applies (inference,
    ``planned`` on, no forced kernel, not batch-invariant, more than one candidate), else
    :func:`~flair_elmo_modes.bilm.fast.kernels.kernel_name`'s rule.

    Args:
        layer: the layer's weights and sizes.
        inputs: the layer's inputs (their device and dtype decide).
        batch: rows of the batch.
        grad: whether autograd must see the steps.
        block_rows: packed rows per input-projection product in the LSTM's step loop (a
            measurement computes its input projections so too).
    """
    name = kernel_name(layer.cell_dim, layer.projection_dim, batch, inputs, grad)
    paths = fast_paths.current()
    if name != TORCH and paths.allows("planned") and paths.kernel is None and not paths.allows("batch_invariant"):
        usable = candidates(layer.cell_dim, layer.projection_dim, inputs)
        if len(usable) > 1:
            name = PLAN.kernel(layer, inputs, batch, usable, block_rows)
    return build_kernel(name, layer, batch)


def measure(
    layer: LayerWeights, like: torch.Tensor, work: Workload, usable: list[str], block_rows: int
) -> dict[str, Any]:
    """Time and check every kernel of ``usable`` (the plain one first) on ``work``: a plan entry."""
    rows = work.timed_rows
    held = layer.derived.names()
    try:
        return _measure(layer, like, work, usable, rows, block_rows)
    finally:
        # The candidates' weight copies (packed for MKL or oneDNN, bf16) made for the measurement go:
        # the chosen kernel makes its own again when built, and the others would only hold memory
        # ("original": about 300 MB per kernel).
        layer.derived.discard(layer.derived.names() - held)


def _measure(
    layer: LayerWeights, like: torch.Tensor, work: Workload, usable: list[str], rows: int, block_rows: int
) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    # Hidden states and token vectors of ELMo are O(1) (outputs are clipped at 3): unit normals.
    inputs = torch.randn(2, STEPS * rows, work.input_dim, generator=generator).to(like.device)
    block_steps = max(1, block_rows // rows)
    runs = {name: _timed_run(build_kernel(name, layer, rows), inputs, rows, block_steps) for name in usable}
    outputs = {name: run() for name, run in runs.items()}  # the warm-up: packs weights, compiles
    loops = {name: max(1, math.ceil(MIN_SAMPLE_SECONDS / _seconds(runs[name], 1, like.device))) for name in usable}
    times: dict[str, list[float]] = {name: [] for name in usable}
    for repeat in range(REPEATS):  # interleaved, the order alternating
        for name in usable if repeat % 2 == 0 else usable[::-1]:
            times[name].append(_seconds(runs[name], loops[name], like.device))
    exact = _exact_run(layer, inputs, rows, block_steps)
    plain_error = _errors(outputs[usable[0]], exact)
    reduced = precision.dtype_of(work.precision)  # type: ignore[arg-type]
    floor = torch.finfo(reduced).eps * float(exact.abs().mean())  # an exact plain run would leave only this
    measurements = {}
    for name in usable:
        mean_error, max_error = _errors(outputs[name], exact)
        qualifies = mean_error <= ACCURACY_FACTOR * max(plain_error[0], floor) and max_error <= ACCURACY_FACTOR * max(
            plain_error[1], floor
        )
        measurements[name] = Measurement(min(times[name]), mean_error, max_error, qualifies)
    qualified = [name for name in usable if measurements[name].qualifies] or usable[:1]
    chosen = min(qualified, key=lambda name: measurements[name].seconds)
    log.debug("kernel plan %s: %s", work.key, chosen)
    return {
        "kernel": chosen,
        "workload": asdict(work),
        "measured": {name: asdict(m) for name, m in measurements.items()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average": load_average(),
        "cpus": os.cpu_count(),
    }


def load_average() -> float | None:
    """The system's 1-minute load average (None where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def provisional(entry: dict[str, Any]) -> bool:
    """Whether ``entry`` was measured on a busy machine: with a load average above the CPU count
    (this process alone, at most one thread per CPU, stays at or below it)."""
    load, cpus = entry.get("load_average"), entry.get("cpus")
    return isinstance(load, (int, float)) and isinstance(cpus, int) and load > cpus


def _timed_run(kernel: Kernel, inputs: torch.Tensor, rows: int, block_steps: int) -> Callable[[], torch.Tensor]:
    """A run of ``kernel`` on ``inputs`` (``(2, STEPS * rows, input_dim)``): :data:`STEPS` steps of
    ``rows`` rows from zero state, with the input projections of ``block_steps`` steps at a time, as
    the LSTM's step loop computes them (blocks of up to ``input_projection_rows`` rows); returns
    ``(2, STEPS * rows, proj)``."""
    layer = kernel.layer

    def run() -> torch.Tensor:
        with torch.no_grad():
            hidden = inputs.new_zeros(2, rows, layer.projection_dim)
            memory = inputs.new_zeros(2, rows, layer.cell_dim)
            output = inputs.new_empty(2, STEPS * rows, layer.projection_dim)
            for first in range(0, STEPS, block_steps):
                end = min(first + block_steps, STEPS)
                projected = kernel.project(inputs[:, first * rows : end * rows])
                for t in range(first, end):
                    step = slice((t - first) * rows, (t - first + 1) * rows)
                    out = output[:, t * rows : (t + 1) * rows] if kernel.in_place else None
                    hidden, memory = kernel.step(projected[:, step], hidden, memory, out)
                    if out is None:
                        output[:, t * rows : (t + 1) * rows] = hidden
            return output

    return run


def _seconds(run: Callable[[], torch.Tensor], loops: int, device: torch.device) -> float:
    """Seconds per call of ``run``, over ``loops`` calls."""
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(loops):
        run()
    _synchronize(device)
    return (time.perf_counter() - start) / loops


def _exact_run(layer: LayerWeights, inputs: torch.Tensor, rows: int, block_steps: int) -> torch.Tensor:
    """The run of :func:`_timed_run` in float64 (the plain kernel on float64 copies of the layer)."""
    names = ("weight_ih", "weight_hh", "bias", "weight_hr")
    exact = replace(layer, **{name: getattr(layer, name).detach().double() for name in names})
    return _timed_run(TorchKernel(exact), inputs.double(), rows, block_steps)()


def _errors(output: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
    error = (output.double() - exact).abs()
    return float(error.mean()), float(error.max())


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
