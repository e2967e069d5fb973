"""The training loop: Adam over shuffled length-bucketed batches, checkpoints, resume, export."""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from flair_elmo_modes.atomic import atomic_file, remove_stale_temps
from flair_elmo_modes.training.config import TrainConfig
from flair_elmo_modes.training.data import (
    EncodedCorpus,
    Vocabulary,
    make_batches,
    read_sentences,
    split_long_sentences,
)
from flair_elmo_modes.training.export import export_model, write_json
from flair_elmo_modes.training.lm import BiLanguageModel

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
RESULT_NAME = "result.json"
MODEL_DIR_NAME = "model"


@dataclass(frozen=True)
class Perplexity:
    """Perplexity of each direction over ``tokens`` predictions (words plus one marker per sentence)."""

    forward: float
    backward: float
    tokens: int

    @property
    def mean(self) -> float:
        """The geometric mean of both directions (exp of the mean NLL)."""
        return math.sqrt(self.forward * self.backward)


@dataclass
class TrainResult:
    """What :func:`train_bilm` reports; also written to ``output_dir/result.json``.

    Attributes:
        model_dir: the exported ``options.json``, ``weights.hdf5`` and ``lm_head.hdf5``.
        steps: optimizer steps in all (across resumes).
        epochs_completed: full passes over the training text.
        train_tokens: predictions per direction seen in training (across resumes).
        train_seconds: training time (across resumes, evaluation excluded).
        tokens_per_second: ``train_tokens / train_seconds``.
        vocab_size: output words, specials included.
        bilm_parameters: parameters of the exported biLM.
        softmax_parameters: parameters of the softmax(es).
        dev: perplexity on the dev text after each epoch (and at the end, if stopped mid-epoch).
        stopped_by: ``"epochs"``, ``"max_steps"`` or ``"max_minutes"``.
    """

    model_dir: Path
    steps: int
    epochs_completed: int
    train_tokens: int
    train_seconds: float
    tokens_per_second: float
    vocab_size: int
    bilm_parameters: int
    softmax_parameters: int
    train_loss: float
    dev: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str = "epochs"

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["model_dir"] = str(self.model_dir)
        return raw


@dataclass
class _Progress:
    """Where training is; saved in the checkpoint."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    train_tokens: int = 0
    train_seconds: float = 0.0
    epoch_nll: float = 0.0
    epoch_tokens: int = 0
    dev: list[dict[str, Any]] = field(default_factory=list)


def train_bilm(config: TrainConfig, check: Callable[[], None] | None = None) -> TrainResult:
    """Train forward and backward ELMo language models on ``config.train_file`` and export them.

    Resumes from ``config.output_dir/checkpoint.pt`` when it exists and ``config.resume`` is set;
    with the same config, a resumed run takes the same steps as an uninterrupted one.
    Temporary files a killed run left in ``config.output_dir`` are removed first.

    Args:
        config: the run.
        check: called before every step and just before every file is renamed into place;
            an exception it raises (the CLI's ``Interrupted``) stops the run, and every file
            of ``output_dir`` stays as it was (the last checkpoint included).

    Raises:
        FileNotFoundError: a text file is missing.
        TrainingDataError: a text file is empty or not UTF-8.
        ValueError: the checkpoint was made with a different model or data config.
        WriteError: a checkpoint, the model or ``result.json`` could not be written (disk full).
    """
    threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    try:
        return _train(config, check or _no_check)
    finally:
        torch.set_num_threads(threads)


def _no_check() -> None:
    pass


@dataclass
class _Run:
    """What the steps of a training run share (built by :func:`_build_run`)."""

    config: TrainConfig
    vocab: Vocabulary
    train: EncodedCorpus
    dev: EncodedCorpus | None
    lengths: list[int]  # of the training sentences, markers included: what batches are made of
    batches_per_epoch: int
    model: BiLanguageModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    progress: _Progress
    check: Callable[[], None]

    @property
    def checkpoint_path(self) -> Path:
        return self.config.output_dir / CHECKPOINT_NAME

    def save_checkpoint(self) -> None:
        _save_checkpoint(
            self.checkpoint_path,
            self.config,
            self.vocab,
            self.model,
            self.optimizer,
            self.scheduler,
            self.progress,
            check=self.check,
        )

    def evaluate_dev(self) -> Perplexity | None:
        return None if self.dev is None else evaluate(self.model, self.dev, self.config.eval_batch_size)


def _train(config: TrainConfig, check: Callable[[], None]) -> TrainResult:
    train_sentences, dev_sentences = _read_data(config)  # bad input fails before anything is written
    config.output_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(config.output_dir)
    checkpoint_path = config.output_dir / CHECKPOINT_NAME
    checkpoint = _load_checkpoint(checkpoint_path, config) if config.resume and checkpoint_path.is_file() else None
    run = _build_run(config, train_sentences, dev_sentences, checkpoint, check)
    if checkpoint is not None:
        _resume(run, checkpoint)
    stopped_by = _train_epochs(run)
    train_loss = _finish(run, stopped_by)
    return _export(run, stopped_by, train_loss)


def _read_data(config: TrainConfig) -> tuple[list[list[str]], list[list[str]] | None]:
    """The training and dev sentences, lines longer than ``max_sentence_tokens`` split."""
    limit = config.max_sentence_tokens
    train = split_long_sentences(read_sentences(config.train_file), limit)
    dev = split_long_sentences(read_sentences(config.dev_file), limit) if config.dev_file is not None else None
    return train, dev


def _remove_stale_temps(output_dir: Path) -> None:
    """The temporary files (and export staging directories) of a run that was killed."""
    for name in (CHECKPOINT_NAME, RESULT_NAME):
        remove_stale_temps(output_dir / name)
    remove_stale_temps(output_dir / MODEL_DIR_NAME, directories=True)


def _build_run(
    config: TrainConfig,
    train_sentences: list[list[str]],
    dev_sentences: list[list[str]] | None,
    checkpoint: dict[str, Any] | None,
    check: Callable[[], None],
) -> _Run:
    """Vocabulary, encoded corpora, model, optimizer and learning-rate schedule (fresh weights)."""
    if checkpoint is not None:
        vocab = Vocabulary(tuple(checkpoint["vocab"]))
    else:
        vocab = Vocabulary.build(train_sentences, config.min_count, config.max_vocab_size)
    max_chars = config.options.max_characters_per_token
    train = EncodedCorpus.build(train_sentences, vocab, max_chars)
    dev = EncodedCorpus.build(dev_sentences, vocab, max_chars) if dev_sentences is not None else None
    logger.info(
        "training text: %d sentences, %d predictions per direction, vocabulary %d words (%.2f%% <UNK>)",
        len(train.sentences),
        train.n_tokens,
        len(vocab),
        100.0 * train.n_unk / max(train.n_tokens, 1),
    )

    torch.manual_seed(config.seed)
    model = BiLanguageModel(
        config.options, len(vocab), config.softmax, config.cutoffs, config.share_softmax, config.dropout
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    lengths = [len(sentence) for sentence in train.sentences]
    batches_per_epoch = len(make_batches(lengths, config.batch_size, torch.Generator().manual_seed(0)))
    planned_steps = config.epochs * batches_per_epoch
    if config.max_steps is not None:
        planned_steps = min(planned_steps, config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config.lr_schedule, planned_steps))
    return _Run(config, vocab, train, dev, lengths, batches_per_epoch, model, optimizer, scheduler, _Progress(), check)


def _resume(run: _Run, checkpoint: dict[str, Any]) -> None:
    """Weights, optimizer, schedule, progress and random state of ``checkpoint``."""
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.progress = _Progress(**checkpoint["progress"])
    torch.set_rng_state(checkpoint["rng_state"])
    logger.info("resumed from %s at epoch %d, step %d", run.checkpoint_path, run.progress.epoch + 1, run.progress.step)


def _train_epochs(run: _Run) -> str:
    """Train until the planned epochs are done or a limit stops it; returns what stopped it."""
    config, progress = run.config, run.progress
    while progress.epoch < config.epochs:
        stopped_by = _train_epoch(run)
        if stopped_by != "epochs":
            return stopped_by
        _end_epoch(run)
    return "epochs"


def _train_epoch(run: _Run) -> str:
    """The remaining steps of the current epoch: ``"epochs"`` if it ended, else the limit that stopped it."""
    config, progress = run.config, run.progress
    batches = make_batches(run.lengths, config.batch_size, _epoch_generator(config.seed, progress.epoch))
    bar = tqdm(
        total=len(batches),
        initial=progress.batch_in_epoch,
        desc=f"epoch {progress.epoch + 1}/{config.epochs}",
        disable=not config.progress,
        unit="batch",
        dynamic_ncols=True,
    )
    run.model.train()
    with bar:
        while progress.batch_in_epoch < len(batches):
            run.check()
            if config.max_steps is not None and progress.step >= config.max_steps:
                return "max_steps"
            if config.max_minutes is not None and progress.train_seconds >= 60.0 * config.max_minutes:
                return "max_minutes"
            start = time.perf_counter()
            batch = batches[progress.batch_in_epoch]
            nll, count = _train_step(run.model, run.optimizer, config.grad_clip, run.train, batch)
            run.scheduler.step()
            progress.train_seconds += time.perf_counter() - start
            progress.step += 1
            progress.batch_in_epoch += 1
            progress.train_tokens += count
            progress.epoch_nll += nll
            progress.epoch_tokens += count
            mean_nll = progress.epoch_nll / (2 * progress.epoch_tokens)
            bar.set_postfix(loss=f"{mean_nll:.3f}", ppl=f"{math.exp(mean_nll):.1f}", refresh=False)
            bar.update()
            if config.checkpoint_every and progress.step % config.checkpoint_every == 0:
                run.save_checkpoint()
    return "epochs"


def _end_epoch(run: _Run) -> None:
    """Record the finished epoch (train loss, dev perplexity) and checkpoint it."""
    progress = run.progress
    epoch_loss = progress.epoch_nll / max(2 * progress.epoch_tokens, 1)
    record: dict[str, Any] = {"epoch": progress.epoch + 1, "step": progress.step, "train_loss": epoch_loss}
    perplexity = run.evaluate_dev()
    if perplexity is not None:
        record.update(dev_forward=perplexity.forward, dev_backward=perplexity.backward)
    logger.info("epoch %d: %s", progress.epoch + 1, _format_record(record))
    progress.dev.append(record)
    progress.epoch += 1
    progress.batch_in_epoch = 0
    progress.epoch_nll, progress.epoch_tokens = 0.0, 0
    run.save_checkpoint()


def _finish(run: _Run, stopped_by: str) -> float:
    """After the last step: checkpoint and evaluate a run stopped mid-epoch; returns the train loss."""
    progress = run.progress
    train_loss = progress.epoch_nll / (2 * progress.epoch_tokens) if progress.epoch_tokens else math.nan
    if stopped_by == "epochs":
        return progress.dev[-1]["train_loss"] if progress.dev else train_loss
    logger.info("stopped by %s at step %d", stopped_by, progress.step)
    run.save_checkpoint()
    already_evaluated = bool(progress.dev) and progress.dev[-1]["step"] == progress.step
    if run.dev is not None and progress.batch_in_epoch > 0 and not already_evaluated:
        perplexity = run.evaluate_dev()
        assert perplexity is not None  # there is a dev text
        record = {"epoch": progress.epoch + progress.batch_in_epoch / run.batches_per_epoch, "step": progress.step}
        record.update(train_loss=train_loss, dev_forward=perplexity.forward, dev_backward=perplexity.backward)
        logger.info("end: %s", _format_record(record))
        progress.dev.append(record)
    return train_loss


def _export(run: _Run, stopped_by: str, train_loss: float) -> TrainResult:
    """Export the model, write ``result.json`` and return the result."""
    config, model, progress = run.config, run.model, run.progress
    model_dir = export_model(model.eval(), run.vocab, config.output_dir / MODEL_DIR_NAME, check=run.check)
    softmax_modules = [model.forward_softmax] + ([] if model.share_softmax else [model.backward_softmax])
    result = TrainResult(
        model_dir=model_dir,
        steps=progress.step,
        epochs_completed=progress.epoch,
        train_tokens=progress.train_tokens,
        train_seconds=progress.train_seconds,
        tokens_per_second=progress.train_tokens / progress.train_seconds if progress.train_seconds else 0.0,
        vocab_size=len(run.vocab),
        bilm_parameters=sum(p.numel() for p in model.bilm.parameters()),
        softmax_parameters=sum(p.numel() for m in softmax_modules for p in m.parameters()),
        train_loss=train_loss,
        dev=progress.dev,
        stopped_by=stopped_by,
    )
    write_json(config.output_dir / RESULT_NAME, {"config": config.to_dict(), **result.to_dict()}, check=run.check)
    logger.info("exported %s (%.0f tokens/s)", model_dir, result.tokens_per_second)
    return result


def _train_step(
    model: BiLanguageModel,
    optimizer: torch.optim.Optimizer,
    grad_clip: float,
    corpus: EncodedCorpus,
    indices: list[int],
) -> tuple[float, int]:
    """One optimizer step on the mean NLL of both directions; returns the summed NLL and the count."""
    char_ids, lengths, targets = corpus.batch(indices)
    loss = model(char_ids, lengths, targets)
    total = loss.forward_nll + loss.backward_nll
    optimizer.zero_grad(set_to_none=True)
    (total / (2 * loss.count)).backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return float(total.detach()), loss.count


@torch.no_grad()
def evaluate(model: BiLanguageModel, corpus: EncodedCorpus, batch_size: int = 128) -> Perplexity:
    """Perplexity of both directions on ``corpus`` (model put in eval mode)."""
    model.eval()
    forward_nll = backward_nll = 0.0
    count = 0
    lengths = [len(sentence) for sentence in corpus.sentences]
    for indices in make_batches(lengths, batch_size):
        char_ids, lengths_t, targets = corpus.batch(indices)
        loss = model(char_ids, lengths_t, targets)
        forward_nll += float(loss.forward_nll)
        backward_nll += float(loss.backward_nll)
        count += loss.count
    return Perplexity(math.exp(forward_nll / count), math.exp(backward_nll / count), count)


def _lr_factor(schedule: str, planned_steps: int) -> Callable[[int], float]:
    """LambdaLR's multiplier: 1, or linear from 1 to 0.1 over ``planned_steps``."""
    if schedule == "constant":
        return lambda step: 1.0
    return lambda step: max(0.1, 1.0 - 0.9 * step / max(planned_steps, 1))


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The batch order of an epoch depends only on the seed and the epoch number."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _format_record(record: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())


def _save_checkpoint(
    path: Path,
    config: TrainConfig,
    vocab: Vocabulary,
    model: BiLanguageModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: _Progress,
    check: Callable[[], None] | None = None,
) -> None:
    """Write the checkpoint atomically (:func:`~flair_elmo_modes.atomic.atomic_file`).

    It holds only tensors and plain data, so :func:`_load_checkpoint` reads it with
    ``weights_only=True``. ``check`` runs just before the rename. A failed write (disk full)
    is a :class:`~flair_elmo_modes.atomic.WriteError` naming the file; the old one is kept.
    """
    state = {
        "config": config.model_dict(),
        "vocab": list(vocab.words),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "progress": asdict(progress),
        "rng_state": torch.get_rng_state(),
    }
    problem = _not_plain(state, "checkpoint")
    if problem is not None:  # a bug here, not bad input: the checkpoint could not be resumed from
        raise TypeError(
            f"{path}: {problem} is not a tensor or plain data; torch.load(weights_only=True) would refuse it"
        )
    with atomic_file(path, before_commit=check) as handle:
        torch.save(state, handle)


_PLAIN_TYPES = (str, int, float, bool, type(None))
#: What ``_save_checkpoint`` writes; ``_load_checkpoint`` checks each key's type before use.
_CHECKPOINT_TYPES: dict[str, type] = {
    "config": dict,
    "vocab": list,
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
    "progress": dict,
    "rng_state": torch.Tensor,
}


def _not_plain(value: Any, where: str) -> str | None:
    """The first part of ``value`` that is neither a tensor nor plain data, else ``None``.

    Exact types: a subclass (``numpy.float64`` is a ``float``) would be pickled as a class.
    """
    if type(value) in _PLAIN_TYPES or isinstance(value, torch.Tensor):
        return None
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in _PLAIN_TYPES:
                return f"a key of {where} ({type(key).__name__})"
            problem = _not_plain(item, f"{where}[{key!r}]")
            if problem is not None:
                return problem
        return None
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            problem = _not_plain(item, f"{where}[{i}]")
            if problem is not None:
                return problem
        return None
    return f"{where} ({type(value).__name__})"


def _load_checkpoint(path: Path, config: TrainConfig) -> dict[str, Any]:
    """Read a checkpoint and check that it was made with the same model and data config.

    Loads with ``weights_only=True``: a pickle that would create other objects (or run code) is
    refused without being executed.
    """

    def unreadable(reason: str) -> ValueError:
        return ValueError(f"{path}: not a readable training checkpoint ({reason}); delete it to start over")

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message suggests turning the weights-only guard off; keep only the line naming what was refused.
        lines = [line for line in str(error).splitlines() if line.strip() and "weights_only" not in line]
        reason = lines[0] if lines else "not tensors and plain data"
        raise unreadable(f"it holds more than tensors and plain data: {reason}") from error
    except Exception as error:  # zip, EOF and torch errors all mean "not a usable checkpoint"
        raise unreadable(str(error)) from error
    if not isinstance(checkpoint, dict):
        raise unreadable(f"found a {type(checkpoint).__name__}; expected a dict with {', '.join(_CHECKPOINT_TYPES)}")
    for key, kind in _CHECKPOINT_TYPES.items():
        if key not in checkpoint:
            raise unreadable(f"'{key}' is missing")
        if not isinstance(checkpoint[key], kind):
            raise unreadable(f"'{key}' is a {type(checkpoint[key]).__name__}; expected a {kind.__name__}")
    if not all(isinstance(word, str) for word in checkpoint["vocab"]):
        raise unreadable("'vocab' holds something other than strings")
    expected_progress = {f.name for f in fields(_Progress)}
    if set(checkpoint["progress"]) != expected_progress:
        raise unreadable(f"'progress' has keys {sorted(checkpoint['progress'])}; expected {sorted(expected_progress)}")
    expected = config.model_dict()
    # Checkpoints from before max_sentence_tokens existed never split lines: 0, no limit.
    found = {"max_sentence_tokens": 0, **checkpoint["config"]}
    differing = sorted(key for key in expected if found.get(key) != expected[key])
    if differing:
        details = "; ".join(f"{key}: checkpoint {found.get(key)!r}, config {expected[key]!r}" for key in differing)
        raise ValueError(f"{path} was made with a different config ({details}); use another output directory")
    return checkpoint
