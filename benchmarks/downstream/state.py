"""What does statefulness change downstream? Stateless vs stateful ELMo vectors in the Brown POS study.

AllenNLP's ``Elmo`` carries each batch row's LSTM state to the next batch; this library starts
every sentence from zero state unless ``stateful=True``. The study of
:mod:`benchmarks.downstream.run` (same data, taggers, seeds and sizes), POS only, for ELMo layer
modes alone (default ``all`` and ``mix``), in four ways per seed:

- ``stateless``: (a) the tagger trained and evaluated on stateless vectors (the library's default);
- ``stateless-on-stateful``: (b) that same tagger evaluated on stateful test vectors;
- ``stateful``: (c) a tagger trained and evaluated on stateful vectors;
- ``stateful-on-stateless``: (d) that tagger evaluated on stateless test vectors: the migration
  case, a tagger trained on AllenNLP's (stateful) vectors served by this library's default.

Stateful vectors: ``BiLmRunner(bilm, stateful=True)``, the carried state of
``flair_elmo_modes.allennlp.Elmo(stateful=True)`` and ``ELMoEmbeddings(stateful=True)`` (AllenNLP's
rules: row i of a batch starts from the state row i of the previous batches left). A stateful
biLM's layers depend on the order and the make-up of the batches, so they are computed once, in
a fixed order, into caches the taggers then read: each split in the data's order (train: the
tagger's training sample in its drawn order; dev, test: whole Brown files in document order), in
batches of 32 (``--batch-size``), the state reset once at the start of each split. They are the stateful vectors
one pass over the data in that order gives; the same in every epoch (Flair reshuffles its
mini-batches every epoch: a stateful biLM run live would give other vectors each time). The
stateless caches are filled in the very same batches, so the two kinds differ only by the
carried state. Three caches: stateless (every sentence), stateful for training (train and dev)
and stateful for evaluation (test), so that no test sentence takes the layers a training
sentence of the same text got in another context. The report checks from the caches' hit and
miss counts that training and every evaluation read the layers of their kind and ran no biLM,
and gives the per-layer difference between stateful and stateless test layers and the accuracy
differences per seed, paired with (a), and (d) with (c). The machinery is
:mod:`benchmarks.downstream.paired`'s, shared with :mod:`benchmarks.downstream.precision`.

Run it from the repository root:

Examples:
    python -m benchmarks.downstream.state --threads 1   # ~9 min on 2 cores
    python -m benchmarks.downstream.state --smoke --out ds-state-smoke
    python -m benchmarks.downstream.state --configs all --seeds 5 --brown-dir ~/brown

Writes ``downstream_state.json`` and ``downstream_state.md`` to ``--out`` (default
``benchmarks/results``); progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from flair.data import Sentence

from benchmarks._common import batches
from benchmarks.downstream import paired, run
from flair_elmo_modes.bilm.fast.derived import track_parameters
from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.layer_cache import LayerCache
from flair_elmo_modes.runner import BiLmRunner

RESULT_NAME = "downstream_state"
KINDS = ("stateless", "stateful")
BATCH_SIZE = 32  # the default batches of the stateful passes (and of the stateless ones)
#: way -> (kind of vectors the tagger trained on, kind of its test vectors)
WAYS = {
    "stateless": ("stateless", "stateless"),
    "stateless-on-stateful": ("stateless", "stateful"),
    "stateful": ("stateful", "stateful"),
    "stateful-on-stateless": ("stateful", "stateless"),
}
WAY_LABELS = {
    "stateless": "(a) trained and evaluated on stateless",
    "stateless-on-stateful": "(b) stateless-trained, evaluated on stateful",
    "stateful": "(c) trained and evaluated on stateful",
    "stateful-on-stateless": "(d) stateful-trained, evaluated on stateless",
}
#: difference -> (way, the way it is paired with)
COMPARED = {
    "stateless-on-stateful": ("stateless-on-stateful", "stateless"),
    "stateful": ("stateful", "stateless"),
    "stateful-on-stateless": ("stateful-on-stateless", "stateless"),
    "stateful-on-stateless-vs-stateful": ("stateful-on-stateless", "stateful"),
}


def fill_in_order(
    runner: BiLmRunner, cache: LayerCache, parts: Mapping[str, Sequence[Sentence]], batch_size: int = BATCH_SIZE
) -> dict[str, Any]:
    """Put into ``cache`` the layers ``runner`` gives every sentence of ``parts``: each part's
    sentences in their order, in batches of ``batch_size``, the runner's carried state reset at
    the start of each part (a stateless runner carries none).

    The cache is keyed by token texts: a text met again (in the same part or a later one) keeps
    the layers of its first occurrence, though a stateful pass gives the repeat other layers (its
    context differs). Returns, per part, its sentences, tokens, batches, seconds, such repeats and
    how far their own layers are from the kept ones; and the cache's distinct sentences.

    Raises:
        RuntimeError: the cache dropped its entries on validation (untracked biLM weights).
    """
    cache.validate(runner.bilm)  # keyed to the biLM's weights now, as ELMoEmbeddings will check
    kept: dict[tuple[str, ...], torch.Tensor] = {}
    info: dict[str, Any] = {}
    for name, sentences in parts.items():
        started = time.perf_counter()
        runner.reset_states()
        repeats, repeat_max_abs_diff, n_batches = 0, 0.0, 0
        for batch in batches(sentences, batch_size):
            texts = [[token.text for token in sentence] for sentence in batch]
            layers = runner.run(texts).layers  # (n_layers + 1, batch, timesteps, dim)
            n_batches += 1
            for row, tokens in enumerate(texts):
                key = tuple(tokens)
                entry = layers[:, row, : len(tokens)]
                if key in kept:
                    repeats += 1
                    repeat_max_abs_diff = max(repeat_max_abs_diff, (entry - kept[key]).abs().max().item())
                    continue
                kept[key] = entry.clone()  # a slice would keep the whole padded batch alive
                cache.put(key, kept[key])
        info[name] = {
            "sentences": len(sentences),
            "tokens": sum(map(len, sentences)),
            "batches": n_batches,
            "seconds": time.perf_counter() - started,
            "repeats": repeats,
            "repeat_max_abs_diff": repeat_max_abs_diff,
        }
    cache.validate(runner.bilm)
    if len(cache) != len(kept):
        raise RuntimeError(f"the cache holds {len(cache)} of {len(kept)} sentences after filling")
    return {"parts": info, "distinct_sentences": len(kept)}


def fill(
    task: run.TaskData, bilm: ElmoBiLm, model_name: str, args: argparse.Namespace, log: logging.Logger
) -> paired.Caches:
    """The stateless cache (every sentence), the stateful one of training (train, then dev) and
    the stateful one of evaluation (test), all in the data's order and the same batches of
    ``args.batch_size``."""
    size = args.batch_size
    track_parameters(bilm)  # so that the caches' weights key stays valid (see bilm.fast.derived)
    every = {"train": task.train, "dev": task.dev, "test": task.test}
    training = {"train": task.train, "dev": task.dev}
    stateless = run.SharedElmo(model_name, bilm, cache_size=sum(map(len, every.values())))
    stateful_train = run.SharedElmo(model_name, bilm, cache_size=len(task.train) + len(task.dev))
    stateful_test = run.SharedElmo(model_name, bilm, cache_size=len(task.test))
    stateful = BiLmRunner(bilm, stateful=True)  # reset at the start of every part
    info: dict[str, Any] = {"batch_size": size}
    info["stateless"] = fill_in_order(BiLmRunner(bilm), stateless.cache, every, size)
    info["stateful_train"] = fill_in_order(stateful, stateful_train.cache, training, size)
    info["stateful_test"] = fill_in_order(stateful, stateful_test.cache, {"test": task.test}, size)
    for name in ("stateless", "stateful_train", "stateful_test"):
        log.info("%s cache: %s", name, info[name])
    return paired.Caches(
        train={"stateless": stateless, "stateful": stateful_train},
        test={"stateless": stateless, "stateful": stateful_test},
        info=info,
    )


def vectors_note(report: dict[str, Any]) -> str:
    return (
        "Stateless: every sentence from zero LSTM state (the library's default). Stateful: AllenNLP's carried "
        "state (`Elmo(stateful=True)`: row i of a batch starts from the state row i of the previous batch left), "
        "each split in the data's order (train: the tagger's sample in its drawn order; dev, test: whole files in "
        f"document order) in batches of {report['cache']['batch_size']}, the state reset at the start of each "
        "split. Both are computed once, in those batches, into caches the taggers read: the stateful vectors one "
        "pass over the data in that order gives, the same every epoch (Flair reshuffles its mini-batches each "
        "epoch; a stateful biLM run live would give other vectors each time)."
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=positive,
        default=BATCH_SIZE,
        help=f"sentences per biLM batch of the stateful (and stateless) passes (default {BATCH_SIZE})",
    )


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _pass(info: dict[str, Any]) -> str:
    parts = ", ".join(f"{name} {part['sentences']}" for name, part in info["parts"].items())
    seconds = sum(part["seconds"] for part in info["parts"].values())
    return f"{parts} sentences: {info['distinct_sentences']} distinct, {seconds:.1f} s"


def caches_note(report: dict[str, Any]) -> str:
    cache = report["cache"]
    stateful = [part for name in ("stateful_train", "stateful_test") for part in cache[name]["parts"].values()]
    repeats = sum(part["repeats"] for part in stateful)
    largest = max((part["repeat_max_abs_diff"] for part in stateful), default=0.0)
    return (
        f"Three caches, each filled once before any training, every split in the data's order in batches of "
        f"{cache['batch_size']} (not sorted by length), the same batches for both kinds: stateless "
        f"({_pass(cache['stateless'])}); stateful for training ({_pass(cache['stateful_train'])}; state reset "
        f"at the start of train and of dev); stateful for evaluation ({_pass(cache['stateful_test'])}; state "
        f"reset once at the start of the test set). The caches are keyed by text: {repeats} repeated sentence "
        f"texts in the stateful passes kept their first occurrence's layers (their own differ from those by up "
        f"to {largest:.3g}). Training read all its train and dev sentences from its kind's cache and every "
        f"evaluation all its test sentences from its kind's test cache, with no biLM run (checked from the "
        f"caches' hit and miss counts, recorded per run)."
    )


STUDY = paired.Study(
    module="state",
    result_name=RESULT_NAME,
    title="Downstream POS tagger: stateless vs stateful ELMo vectors",
    kinds=KINDS,
    ways=WAYS,
    way_labels=WAY_LABELS,
    compared=COMPARED,
    layer_pair=("stateless", "stateful"),
    fill=fill,
    vectors_note=vectors_note,
    differences_title="Differences, in points",
    differences_note="Paired by seed: (b) is the same trained tagger as (a), and (d) as (c), so only the test "
    "vectors differ; (c) is another training run than (a) (same seed, other inputs), so its difference includes "
    "training noise. (d) − (a): a tagger trained on stateful (AllenNLP's) vectors served by this library's "
    "stateless default, against one trained on stateless vectors; (d) − (c): what that same tagger loses by the "
    "switch. 95% CI: Student's t over the seeds.",
    caches_note=caches_note,
    add_arguments=add_arguments,
)


def markdown(report: dict[str, Any]) -> str:
    return paired.markdown(report, STUDY)


def main(argv: list[str] | None = None) -> int:
    return paired.main(STUDY, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
