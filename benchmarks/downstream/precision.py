"""Does a bf16 biLM change a downstream POS tagger? fp32 vs bf16 ELMo vectors in the Brown POS study.

The study of :mod:`benchmarks.downstream.run` (same data, taggers, seeds and sizes), POS only, for
ELMo layer modes alone (default ``all`` and ``mix``; no baseline embeddings), in three ways per seed:

- ``fp32``: the tagger trained and evaluated on fp32 vectors (``precision="fp32"``);
- ``fp32-on-bf16``: that same trained tagger evaluated on the test set embedded with
  ``precision="bf16"`` (the vectors a bf16 deployment would give it);
- ``bf16``: a tagger trained and evaluated on bf16 vectors.

Each precision has its own ``LayerCache``, filled once with its own biLM run over every sentence
(same batches, so the two differ only by precision); the report checks from the caches' hit and
miss counts that each evaluation read the layers of its precision and ran no biLM. It also gives
the per-layer difference between bf16 and fp32 layers over the test sentences, and the accuracy
differences to ``fp32`` per seed (the goal: within 0.2 points). The machinery is shared with
:mod:`benchmarks.downstream.state` in :mod:`benchmarks.downstream.paired`.

Run it from the repository root:

Examples:
    python -m benchmarks.downstream.precision --threads 1   # ~8 min on 2 cores
    python -m benchmarks.downstream.precision --smoke --out ds-precision-smoke
    python -m benchmarks.downstream.precision --configs all --seeds 5 --brown-dir ~/brown

Writes ``downstream_precision.json`` and ``downstream_precision.md`` to ``--out`` (default
``benchmarks/results``); progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from flair.data import Sentence

from benchmarks.downstream import paired, run
from flair_elmo_modes.bilm.model import ElmoBiLm

RESULT_NAME = "downstream_precision"
PRECISIONS = ("fp32", "bf16")
#: way -> (precision the tagger trained on, precision of the test vectors)
WAYS = {"fp32": ("fp32", "fp32"), "fp32-on-bf16": ("fp32", "bf16"), "bf16": ("bf16", "bf16")}
WAY_LABELS = {
    "fp32": "(a) trained and evaluated on fp32",
    "fp32-on-bf16": "(b) fp32-trained, evaluated on bf16",
    "bf16": "(c) trained and evaluated on bf16",
}
COMPARED = ("fp32-on-bf16", "bf16")  # each minus fp32
GOAL_POINTS = 0.2


def fill_cache(elmo: run.SharedElmo, sentences: Sequence[Sentence]) -> float:
    """Seconds to fill ``elmo``'s cache with the layers of ``sentences`` at its precision (sorted by
    length, batches of 64: the same batches for every precision)."""
    return run.embed_pass(elmo.embeddings("all"), sorted(sentences, key=len), 64)


def fill(
    task: run.TaskData, bilm: ElmoBiLm, model_name: str, args: argparse.Namespace, log: logging.Logger
) -> paired.Caches:
    """One cache per precision, each filled with every train, dev and test sentence."""
    every = [*task.train, *task.dev, *task.test]
    elmos = {p: run.SharedElmo(model_name, bilm, cache_size=len(every), precision=p) for p in PRECISIONS}
    info: dict[str, Any] = {}
    for precision, elmo in elmos.items():
        info[precision] = {"fill_seconds": fill_cache(elmo, every), "sentences": len(elmo.cache)}
        log.info("%s cache: %s", precision, info[precision])
    return paired.Caches(train=elmos, test=elmos, info=info)


def caches_note(report: dict[str, Any]) -> str:
    fills = report["cache"]
    fill_times = ", ".join(
        f"{p}: {fills[p]['sentences']} sentences in {fills[p]['fill_seconds']:.1f} s" for p in PRECISIONS
    )
    return (
        f"One cache per precision, each filled once with every train, dev and test sentence ({fill_times}, one "
        "after the other, fp32 first); every evaluation read all its test sentences from its own precision's "
        "cache and ran no biLM (checked from the caches' hit and miss counts, recorded per run)."
    )


STUDY = paired.Study(
    module="precision",
    result_name=RESULT_NAME,
    title="Downstream POS tagger: bf16 vs fp32 ELMo vectors",
    kinds=PRECISIONS,
    ways=WAYS,
    way_labels=WAY_LABELS,
    compared={way: (way, "fp32") for way in COMPARED},
    layer_pair=("fp32", "bf16"),
    fill=fill,
    vectors_note=lambda report: (
        "bf16: the biLM's products take bf16 inputs and weights with float32 accumulation; state and vectors float32."
    ),
    differences_title=f"Differences to (a), in points (goal: within {GOAL_POINTS})",
    differences_note="Paired by seed: (b) is the same trained tagger as (a), so only the test vectors differ; (c) "
    "is another training run (same seed, other inputs), so its difference includes training noise. Goal: "
    f"*within* when the 95% confidence interval of the mean (Student's t over the seeds) lies within "
    f"±{GOAL_POINTS}; *mean within* when only the mean does (the seeds cannot resolve {GOAL_POINTS} points).",
    caches_note=caches_note,
    goal_points=GOAL_POINTS,
)


def markdown(report: dict[str, Any]) -> str:
    return paired.markdown(report, STUDY)


def main(argv: list[str] | None = None) -> int:
    return paired.main(STUDY, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
