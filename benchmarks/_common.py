"""Shared pieces of the benchmarks: configurations, random weights, timing, machine facts, logging.

Nothing here imports allennlp, so every benchmark runs in the dev venv; the AllenNLP side lives
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
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
# The bench_*.py run by path (sys.path[0] is benchmarks/), also with the Python of the AllenNLP
# oracle venv, where this checkout is not installed: the checkout's root on sys.path lets them
# import flair_elmo_modes (and tests.helpers) from it. Each of them imports this module first.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from flair_elmo_modes.bilm import ElmoBiLm, ElmoOptions, save_bilm  # noqa: E402
from flair_elmo_modes.system import cpu_model, system_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# Random weights, downloads (Brown, WNUT-16), and the scripts' text splits and training runs,
# unless --cache-dir says otherwise.
DEFAULT_CACHE = Path.home() / ".cache" / "flair-elmo-modes-bench"

_FILTERS = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024))

# The published AllenNLP configurations (options.json of elmo_2x1024_128_2048cnn_1xhighway and
# elmo_2x4096_512_2048cnn_2xhighway).
CONFIGS: dict[str, ElmoOptions] = {
    "small": ElmoOptions(
        char_embedding_dim=16,
        filters=_FILTERS,
        n_highway=1,
        activation="relu",
        n_characters=262,
        max_characters_per_token=50,
        cell_dim=1024,
        projection_dim=128,
        n_layers=2,
        cell_clip=3.0,
        proj_clip=3.0,
        use_skip_connections=True,
    ),
    "original": ElmoOptions(
        char_embedding_dim=16,
        filters=_FILTERS,
        n_highway=2,
        activation="relu",
        n_characters=262,
        max_characters_per_token=50,
        cell_dim=4096,
        projection_dim=512,
        n_layers=2,
        cell_clip=3.0,
        proj_clip=3.0,
        use_skip_connections=True,
    ),
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
        print(f"writing random {name} weights to {directory}", file=sys.stderr)
        save_bilm(directory, random_weights(CONFIGS[name]))
    return options_file, weight_file


def running_text(length: int, count: int, corpus: list[list[str]]) -> list[list[str]]:
    """``count`` sentences of exactly ``length`` tokens cut from the running text of ``corpus``."""
    stream = (token for sentence in corpus for token in sentence)
    return [[next(stream) for _ in range(length)] for _ in range(count)]


# ---------------------------------------------------------------------------------------------------
# Batches, logging


def batches(sentences: Sequence[list[str]], size: int) -> list[Sequence[list[str]]]:
    return [sentences[i : i + size] for i in range(0, len(sentences), size)]


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


def gemm_rate(size: int = 2048, repeats: int = 7) -> float:
    """Measured fp32 ``torch.mm`` rate of ``size``-square matrices in FLOP/s (median)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


# ---------------------------------------------------------------------------------------------------
# Timing and machine facts


def time_passes(run: Callable[[], Any], passes: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``passes`` calls of ``run`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


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


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    """The machine block of every benchmark JSON: ``flair-elmo info --system``'s data under ``system``,
    with the date, the load and the flat fields earlier results have (``cpu_model``, ...)."""
    import numpy

    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "system": system_info(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "load_average_at_start": load_average(),
    }
    try:
        import flair

        info["flair"] = flair.__version__
    except ImportError:
        pass
    try:
        import allennlp.version

        info["allennlp"] = allennlp.version.VERSION
    except ImportError:
        info["allennlp"] = None
    return info


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def publish(out: Path, name: str, results: dict[str, Any], markdown: str) -> None:
    """Write ``<name>.json`` and ``<name>.md`` to ``out``; print the results (no machine facts) and the tables."""
    write_json(out / f"{name}.json", results)
    (out / f"{name}.md").write_text(markdown + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1))
    print(markdown)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
