"""Shared pieces of the benchmarks: models, text, timing, comparisons, machine facts, publishing.

Every ``bench_*.py`` answers one question and writes its answer with :func:`publish`:
``results/<name>.json`` (the numbers and :func:`machine_info`) and ``results/<name>.md`` (its
tables, then one line of machine facts: CPU model and flags, torch and its threads, the load
average and whether other processes ran), with no machine's paths in either.

Nothing here imports allennlp or Flair, and h5py only where random weights are written, so every
benchmark runs in the dev venv and ``bench_int8.py`` in a torch-only venv; the AllenNLP side lives
in :mod:`allennlp_side` and is only imported when allennlp is importable. The text (Brown
sentences) comes from :mod:`corpora`. No sibling imports here: the downstream experiment imports
this module as ``benchmarks._common``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
# The bench_*.py run by path (sys.path[0] is benchmarks/), also with the Python of the AllenNLP
# oracle venv, where this checkout is not installed: the checkout's root on sys.path lets them
# import flair_elmo_modes (and tests.helpers) from it. Each of them imports this module first.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from flair_elmo_modes.bilm import ElmoOptions  # noqa: E402
from flair_elmo_modes.catalogue import PUBLISHED_MODELS  # noqa: E402
from flair_elmo_modes.system import system_info  # noqa: E402

if TYPE_CHECKING:
    from flair_elmo_modes import ElmoEmbedder
    from flair_elmo_modes.bilm import ElmoBiLm

T = TypeVar("T")

RESULTS = Path(__file__).resolve().parent / "results"
# Random weights, downloads (Brown, WNUT-16), and the scripts' text splits and training runs,
# unless --cache-dir says otherwise.
DEFAULT_CACHE = Path.home() / ".cache" / "flair-elmo-modes-bench"

# The published AllenNLP configurations, from the package's catalogue.
CONFIGS: dict[str, ElmoOptions] = {
    name: options for name in ("small", "original") if (options := PUBLISHED_MODELS[name].options) is not None
}

WEIGHT_SEED = 20240607
WEIGHT_VERSION = 2  # bump when random_weights changes, so that cached files are rewritten


def random_weights(options: ElmoOptions, seed: int = WEIGHT_SEED) -> ElmoBiLm:
    """A biLM whose random weights give activations of a realistic size.

    Scales follow bilm-tf's initialisers (conv ``N(0, 1/(width * char_dim))``, highway and projection
    ``N(0, 1/n_filters)``) and, for the LSTM, the gains of ``tests/fixtures/golden/make_golden.py``:
    input weights ``N(0, 1/projection_dim)``, recurrent weights at half that gain (a contractive
    recurrence, as in a trained model), a forget bias around 1.5, and an output projection of gain
    2.5. On Brown sentences every layer then has a standard deviation of about 1 (maximum about 5),
    and a few outputs (0.05% small, 0.5% original) reach the projection clip of 3.
    """
    from flair_elmo_modes.bilm import ElmoBiLm

    generator = torch.Generator().manual_seed(seed)

    def normal_(tensor: torch.Tensor, std: float, mean: float = 0.0) -> None:
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * std + mean)

    bilm = ElmoBiLm(options)
    nf, proj, cell = options.n_filters, options.projection_dim, options.cell_dim
    encoder, lstm = bilm.char_encoder, bilm.lstm
    with torch.no_grad():
        normal_(encoder.char_embedding.weight, 1.0)
        encoder.char_embedding.weight[0] = 0.0
        for (width, _), conv in zip(options.filters, encoder.convolutions, strict=True):
            normal_(conv.weight, 1.0 / math.sqrt(width * options.char_embedding_dim))
            normal_(conv.bias, 0.1)
        for layer in encoder.highway.layers:
            normal_(layer.weight, 1.0 / math.sqrt(nf))
            normal_(layer.bias[:nf], 0.1)
            normal_(layer.bias[nf:], 0.5, mean=1.0)  # AllenNLP's "keep x" gate: bilm-tf's carry bias -1
        normal_(encoder.projection.weight, 1.0 / math.sqrt(nf))
        normal_(encoder.projection.bias, 0.1)
        for k in range(options.n_layers):
            normal_(getattr(lstm, f"weight_ih_l{k}"), 1.0 / math.sqrt(proj))
            normal_(getattr(lstm, f"weight_hh_l{k}"), 0.5 / math.sqrt(proj))
            bias = getattr(lstm, f"bias_l{k}")
            normal_(bias, 0.2)
            normal_(bias[:, cell : 2 * cell], 0.5, mean=1.5)  # forget gate, TF's +1 included
            normal_(getattr(lstm, f"weight_hr_l{k}"), 2.5 / math.sqrt(cell))
    return bilm.eval()


SHIPPED = REPO / "flair_elmo_modes" / "models" / "en-tiny"


def model_files(name: str, cache_dir: Path) -> tuple[Path, Path]:
    """``options.json`` and ``weights.hdf5`` of configuration ``name``: random weights in ``cache_dir``
    (written once), or for ``"en-tiny"`` the shipped model's trained ones."""
    if name == "en-tiny":
        return SHIPPED / "options.json", SHIPPED / "weights.hdf5"
    directory = cache_dir / f"{name}-seed{WEIGHT_SEED}-v{WEIGHT_VERSION}"
    options_file, weight_file = directory / "options.json", directory / "weights.hdf5"
    if not (options_file.is_file() and weight_file.is_file()):
        from flair_elmo_modes.bilm import save_bilm  # h5py: not needed by the torch-only benchmarks

        print(f"writing random {name} weights to {directory}", file=sys.stderr)
        save_bilm(directory, random_weights(CONFIGS[name]))
    return options_file, weight_file


def running_text(length: int, count: int, corpus: list[list[str]]) -> list[list[str]]:
    """``count`` sentences of exactly ``length`` tokens cut from the running text of ``corpus``."""
    stream = (token for sentence in corpus for token in sentence)
    return [[next(stream) for _ in range(length)] for _ in range(count)]


# ---------------------------------------------------------------------------------------------------
# Batches, logging


def batches(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` in consecutive batches of ``size`` (the last one shorter)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def log(message: str) -> None:
    """A progress line on stderr, with the time (stdout stays for results)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# Arithmetic


def nominal_flops(options: ElmoOptions, sentence_lengths: Sequence[int]) -> dict[str, float]:
    """FLOPs per real token of the straightforward computation, by part.

    Straightforward: the char CNN on all ``max_chars`` slots of every position, ``<S>`` and ``</S>``
    included (no deduplication, no window trimming), highway and projection per position, and the
    LSTM (input, recurrent and output projections; gate arithmetic not counted) per position, layer
    and direction. Batch padding is not counted. One multiply-add = 2 FLOPs.
    """
    positions = sum(length + 2 for length in sentence_lengths)
    tokens = sum(sentence_lengths)
    chars = options.max_characters_per_token
    e, nf, p, d = options.char_embedding_dim, options.n_filters, options.projection_dim, options.cell_dim
    per_position = {
        "char_cnn": 2 * e * sum(w * c * (chars - w + 1) for w, c in options.filters),
        "highway": options.n_highway * 2 * nf * 2 * nf,
        "char_projection": 2 * nf * p,
        "lstm": options.n_layers * 2 * 2 * (p * 4 * d + p * 4 * d + d * p),
    }
    scale = positions / tokens
    parts = {name: value * scale for name, value in per_position.items()}
    parts["total"] = sum(parts.values())
    return parts


def gemm_rate(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5) -> float:
    """Measured ``torch.mm`` rate of ``size``-square matrices of ``dtype`` in FLOP/s (median)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


# ---------------------------------------------------------------------------------------------------
# Running and timing


def embed_all(embedder: ElmoEmbedder, batch_list: Sequence[Sequence[list[str]]]) -> list[np.ndarray]:
    """``embedder.embed_batch`` over every batch: one array per sentence, in order."""
    return [array for batch in batch_list for array in embedder.embed_batch(batch)]


def time_sides(sides: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each side per round: one warm-up call each, then ``rounds`` rounds, the order of
    the sides reversed from round to round (ours / theirs / theirs / ours ...: the first call of a
    round finds colder caches, and a change of the machine's load hits every side). A side's call
    is timed here, unless it returns a float: then that is its own measured seconds (a worker
    process that times itself, without the pipe)."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for run in sides.values():
        run()
    names = list(sides)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            reported = sides[name]()
            seconds = time.perf_counter() - start
            times[name].append(reported if isinstance(reported, float) else seconds)
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in times.items()}


# ---------------------------------------------------------------------------------------------------
# Comparing outputs


def float64_layers(
    options_file: Path, weight_file: Path, batch_list: Sequence[Sequence[list[str]]]
) -> list[np.ndarray]:
    """The reference of the float32 errors: the biLM of these files evaluated in float64 on the plain
    path (``fast_paths(enabled=False)``, which matches AllenNLP's float64 to 1e-9 in the golden
    tests), ``(n_layers + 1, n_tokens, dim)`` float64 per sentence."""
    from flair_elmo_modes import ElmoEmbedder
    from flair_elmo_modes.bilm import load_bilm
    from flair_elmo_modes.bilm.fast.fast_paths import fast_paths

    exact = ElmoEmbedder(bilm=load_bilm(options_file, weight_file).double())
    arrays = []
    with fast_paths(enabled=False):
        for batch in batch_list:
            layers, mask = exact.batch_to_embeddings(batch)  # float64 (embed_batch rounds to float32)
            for row, length in zip(layers.numpy(), mask.sum(dim=-1).tolist(), strict=True):
                arrays.append(row[:, :length])
    return arrays


def _pairs(arrays: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = list(zip(arrays, reference, strict=True))
    for a, r in pairs:
        if a.shape != r.shape:
            raise AssertionError(f"shapes differ: {a.shape} vs {r.shape}")
    return pairs


def layer_max_diff(arrays: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> list[float]:
    """Largest absolute difference per layer (axis 0), over all sentences, in float64."""
    worst = [0.0] * reference[0].shape[0]
    for a, r in _pairs(arrays, reference):
        if a.size:
            diff = np.abs(a.astype(np.float64) - r.astype(np.float64)).reshape(len(worst), -1).max(axis=1)
            worst = [max(w, float(d)) for w, d in zip(worst, diff, strict=True)]
    return worst


def max_abs_diff(arrays: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Largest absolute difference over all sentences and layers, in float64."""
    return max(layer_max_diff(arrays, reference), default=0.0)


def mean_abs_diff(arrays: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Mean absolute difference over every value of every sentence, in float64."""
    pairs = _pairs(arrays, reference)
    total = sum(float(np.abs(a.astype(np.float64) - r.astype(np.float64)).sum()) for a, r in pairs)
    return total / max(sum(a.size for a, _ in pairs), 1)


# ---------------------------------------------------------------------------------------------------
# Memory


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux ``ru_maxrss`` is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Current resident set size, MiB (from /proc; psutil is not needed)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler:
    """Peak resident set size (MiB) of this process while the block runs, sampled every 5 ms."""

    def __init__(self) -> None:
        self.start = self.peak = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> RssSampler:
        self.start = self.peak = current_rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, current_rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_mb())


# ---------------------------------------------------------------------------------------------------
# Machine facts

#: Cores kept busy by other processes at or above which a run counts as sharing the machine.
SHARED_CORES = 0.3


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_ticks() -> tuple[int, int]:
    """Busy clock ticks of the whole machine, and of this process (all threads) with the children
    it waited for."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return user + nice + system + irq + softirq + steal, sum(int(own[i]) for i in (11, 12, 13, 14))


class Others:
    """The CPU cores other processes kept busy while the block ran, on average: ``cores`` (None
    where /proc is missing). Children this process waited for count as its own."""

    def __init__(self) -> None:
        self.cores: float | None = None
        self._start: tuple[int, int] | None = None

    def __enter__(self) -> Others:
        try:
            self._start = cpu_ticks()
        except (OSError, ValueError, IndexError):
            self._start = None
        self._began = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._start is None:
            return
        try:
            busy, own = cpu_ticks()
        except (OSError, ValueError, IndexError):
            return
        others = (busy - self._start[0]) - (own - self._start[1])
        seconds = max(time.monotonic() - self._began, 1e-6)
        self.cores = round(max(0, others) / os.sysconf("SC_CLK_TCK") / seconds, 2)


def other_cpu(interval: float = 1.0) -> float | None:
    """CPU cores kept busy by other processes over ``interval`` seconds (None where /proc is missing)."""
    with Others() as others:
        time.sleep(interval)
    return others.cores


def l3_cache() -> str | None:
    """The size of CPU 0's level-3 cache as sysfs writes it (``32768K``), or None."""
    try:
        for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
            if (index / "level").read_text().strip() == "3":
                return (index / "size").read_text().strip()
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    """The machine block of every benchmark JSON: ``flair-elmo info --system``'s data under ``system``,
    the L3 size, the date, the load (load average, and the cores other processes used over a second)
    and the flat fields earlier results have (``cpu_model``, ...). Call it when the run starts:
    :func:`publish` adds the same load figures at its end."""
    system = system_info()
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "system": system,
        "cpu_model": system["cpu"]["model"],
        "logical_cpus": os.cpu_count(),
        "l3_cache": l3_cache(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "load_average_at_start": load_average(),
        "other_cpu_at_start": other_cpu(),
    }
    _RUN.__enter__()  # publish() reads the cores other processes used over the whole run
    for package in ("flair", "allennlp"):
        try:
            info[package] = __import__("importlib.metadata").metadata.version(package)
        except Exception:  # PackageNotFoundError
            info[package] = None
    return info


_RUN = Others()


def shared(machine: dict[str, Any]) -> bool:
    """Whether other processes ran beside the benchmark: they kept at least :data:`SHARED_CORES`
    cores busy at its start, at its end or on average over the run."""
    keys = ("other_cpu_at_start", "other_cpu_during_run", "other_cpu_at_end")
    return any((machine.get(key) or 0.0) >= SHARED_CORES for key in keys)


def machine_line(machine: dict[str, Any]) -> str:
    """One line of a results table's machine facts (from the JSON's machine block, so that a table
    rendered again from its JSON names the machine it was measured on)."""
    system = machine.get("system", {})
    cpu = system.get("cpu", {})
    flags = ", ".join(cpu.get("flags") or []) or "flags unknown"
    math_libraries = system.get("math", {})
    versions = [f"torch {machine.get('torch')}", f"Python {machine.get('python')}"]
    versions += [f"{package} {machine[package]}" for package in ("flair", "allennlp") if machine.get(package)]
    if math_libraries.get("onednn_version"):
        versions.append(f"oneDNN {math_libraries['onednn_version']}")
    load = [machine.get("load_average_at_start"), machine.get("load_average_at_end")]
    load_text = " and ".join(f"{load[i][0]:.2f} at {when}" for i, when in enumerate(("start", "end")) if load[i])
    others = [machine.get(f"other_cpu_{when}") for when in ("at_start", "during_run", "at_end")]
    others_text = ", ".join(
        f"{cores:.1f} {when}"
        for cores, when in zip(others, ("at start", "on average", "at end"), strict=True)
        if cores is not None
    )
    verdict = "machine shared with other processes" if shared(machine) else "no other work on the machine"
    return (
        f"Machine: {machine.get('cpu_model')} ({machine.get('logical_cpus')} logical CPUs; {flags}"
        + (f"; L3 {machine['l3_cache']}" if machine.get("l3_cache") else "")
        + f"), {machine.get('torch_threads')} torch threads; {', '.join(versions)}; {machine.get('date')}; "
        f"load average (1 min) {load_text}; cores used by other processes {others_text}: {verdict}."
    )


# ---------------------------------------------------------------------------------------------------
# Publishing


def portable(value: Any) -> Any:
    """``value`` (JSON data or text) with no machine's paths: the checkout written as ``.`` (its
    parent, where the venvs of the peers live, as ``..``), the temporary directory as ``<tmp>``, the
    home directory as ``~``; non-finite floats as None (strict JSON)."""
    if isinstance(value, str):
        places = ((REPO, "."), (REPO.parent, ".."), (Path(tempfile.gettempdir()), "<tmp>"), (Path.home(), "~"))
        for path, name in places:
            value = name if value == str(path) else value.replace(f"{path}/", f"{name}/")
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {portable(key): portable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [portable(item) for item in value]
    return value


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(portable(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def publish(
    out: Path, name: str, results: dict[str, Any], markdown: str, *, echo: bool = True, json_file: bool = True
) -> dict[str, Path]:
    """Write ``<name>.json`` (unless not ``json_file``) and ``<name>.md`` to ``out``, without machine
    paths (:func:`portable`); return their paths.

    ``results["machine"]`` (:func:`machine_info`, where the results have it) gets the end-of-run load
    unless it has it already (a table rendered again from its JSON keeps the run's), and the markdown
    ends with its :func:`machine_line`. With ``echo``, the results (less the machine block) and the
    markdown go to stdout."""
    machine = results.get("machine")
    if machine is not None:
        if "load_average_at_end" not in machine:
            _RUN.__exit__()
            machine["other_cpu_during_run"] = _RUN.cores
            machine["load_average_at_end"] = load_average()
            machine["other_cpu_at_end"] = other_cpu()
        markdown = markdown.rstrip("\n") + "\n\n" + machine_line(machine)
    markdown = portable(markdown).rstrip("\n") + "\n"
    paths = {"md": out / f"{name}.md"}
    if json_file:
        paths["json"] = out / f"{name}.json"
        write_json(paths["json"], results)
    out.mkdir(parents=True, exist_ok=True)
    paths["md"].write_text(markdown, encoding="utf-8")
    if echo:
        print(json.dumps(portable({k: v for k, v in results.items() if k != "machine"}), indent=1))
        print(markdown)
    return paths


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
