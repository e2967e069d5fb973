"""The training loop: Adam over streamed length-bucketed batches, checkpoints, resume, export.

One process, or several under ``torchrun`` (DistributedDataParallel, see
:mod:`flair_elmo_modes.training.distributed`): every process reads the same stream of batches and
computes its share of each (every ``world.size``-th sentence), so the steps of a run do not depend
on how many processes take them; rank 0 alone writes files.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from flair_elmo_modes.atomic import remove_stale_temps
from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.bilm.options import ElmoOptions
from flair_elmo_modes.training import distributed
from flair_elmo_modes.training.checkpoint import (
    CHECKPOINT_NAME,
    Progress,
    check_same_checkpoint,
    check_same_text,
    checkpoint_state,
    load_checkpoint,
    rng_state,
    set_rng_state,
    write_checkpoint,
)
from flair_elmo_modes.training.config import SMALL_OPTIONS, TrainConfig
from flair_elmo_modes.training.data import (
    EncodedCorpus,
    TrainingDataError,
    Vocabulary,
    count_predictions,
    encode_batch,
    make_batches,
)
from flair_elmo_modes.training.distributed import World
from flair_elmo_modes.training.export import export_model, write_json
from flair_elmo_modes.training.lm import BiLanguageModel
from flair_elmo_modes.training.pretrained import load_pretrained
from flair_elmo_modes.training.shards import ShardedText, TextStats, count_batches, epoch_batches, text_identity

logger = logging.getLogger(__name__)

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
        world_size: processes that trained (``torchrun``'s ``WORLD_SIZE``).
        device: where each process trained (rank 0's device).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        shards: training shards read (empty ones included).
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
    world_size: int = 1
    device: str = "cpu"
    precision: str = "fp32"
    shards: int = 1

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["model_dir"] = str(self.model_dir)
        return raw


@dataclass(frozen=True)
class StepInfo:
    """What :func:`train_bilm` tells its ``on_step`` hook after each optimizer step.

    Attributes:
        step: the step's number, from 1, counted across resumes (the last is ``TrainResult.steps``).
        epoch: the epoch the step belongs to, from 1.
        batch_in_epoch: the step's batch within that epoch, from 1.
        loss: the batch's mean NLL per prediction of both directions (nats; over all processes).
        tokens: the batch's predictions per direction (words plus one sentence marker per sentence).
        sentences: the batch's sentences (long lines split: see ``TrainConfig.max_sentence_tokens``).
        longest: words of the batch's longest sentence (its markers not counted).
        seconds: the step's time.
    """

    step: int
    epoch: int
    batch_in_epoch: int
    loss: float
    tokens: int
    sentences: int
    longest: int
    seconds: float


def train_bilm(
    config: TrainConfig,
    check: Callable[[], None] | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
) -> TrainResult:
    """Train forward and backward ELMo language models on ``config.train_files`` and export them.

    Resumes from ``config.output_dir/checkpoint.pt`` when it exists and ``config.resume`` is set;
    with the same config and number of processes, a resumed run takes the same steps as an
    uninterrupted one. Temporary files a killed run left in ``config.output_dir`` are removed first.
    Under ``torchrun`` every process calls this; rank 0 writes the files and every process returns
    the same result.

    Args:
        config: the run.
        check: called before every step and just before every file is renamed into place;
            an exception it raises (the CLI's ``Interrupted``) stops the run, and every file
            of ``output_dir`` stays as it was (the last checkpoint included).
        on_step: called with a :class:`StepInfo` after every optimizer step, on every process
            (with the same values), once the step is counted and, where ``checkpoint_every``
            falls on it, checkpointed (the checkpoint at the end of an epoch comes after it).
            An exception it raises stops the run as one raised inside the step would:
            ``output_dir`` keeps the last checkpoint written.

    Raises:
        FileNotFoundError: a text, vocabulary or model file is missing.
        TrainingDataError: a text is empty, unreadable or not UTF-8; a bad vocabulary file.
        ValueError: the checkpoint was made with a different config or number of processes;
            ``init_from`` disagrees with the architecture given.
        WriteError: a checkpoint, the model or ``result.json`` could not be written (disk full).
    """
    threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    try:
        world = distributed.from_environment()
        device = distributed.device_for(config.device, world)
        with distributed.process_group(world, device):
            return _train(config, check or _no_check, on_step or _no_hook, world, device)
    finally:
        torch.set_num_threads(threads)


def _no_check() -> None:
    pass


def _no_hook(info: StepInfo) -> None:
    pass


@dataclass
class _Start:
    """Where a run's weights and vocabulary come from (read before anything is written)."""

    options: ElmoOptions
    vocab: Vocabulary | None  # None: counted in the training text
    bilm: ElmoBiLm | None  # the biLM of init_from
    language_model: BiLanguageModel | None  # init_from's biLM and softmax, when the softmax is reused


@dataclass
class _Run:
    """What the steps of a training run share (built by :func:`_build_run`)."""

    config: TrainConfig
    world: World
    device: torch.device
    text: ShardedText
    text_identity: dict[str, Any]  # shards.text_identity of the text: what checkpoints record
    vocab: Vocabulary
    dev: EncodedCorpus | None
    batches_per_epoch: int
    model: BiLanguageModel  # the module itself (what checkpoints and exports hold)
    trained: torch.nn.Module  # what steps call: the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    progress: Progress
    check: Callable[[], None]
    on_step: Callable[[StepInfo], None]

    @property
    def checkpoint_path(self) -> Path:
        return self.config.output_dir / CHECKPOINT_NAME

    def log(self, message: str, *args: Any) -> None:
        if self.world.is_main:
            logger.info(message, *args)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision for the forward pass (a no-op in fp32)."""
        precision = self.config.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def save_checkpoint(self) -> None:
        """Every process's random state, then rank 0 writes the checkpoint (every process calls this)."""
        rng_states = self.world.gather(rng_state(self.device))
        if self.world.is_main:
            state = checkpoint_state(
                config=self.config.model_dict(self.model.bilm.options),
                text=self.text_identity,
                world_size=self.world.size,
                vocab=list(self.vocab.words),
                model=self.model.state_dict(),
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(),
                progress=asdict(self.progress),
                rng_states=rng_states,
            )
            write_checkpoint(self.checkpoint_path, state, self.check)
        self.world.barrier()  # no process runs ahead of a checkpoint it might be resumed from

    def evaluate_dev(self) -> Perplexity | None:
        """The dev perplexity (rank 0 computes it; every process gets it)."""
        if self.dev is None:
            return None
        perplexity = evaluate(self.model, self.dev, self.config.eval_batch_size) if self.world.is_main else None
        return self.world.gather(perplexity)[0]


def _train(
    config: TrainConfig,
    check: Callable[[], None],
    on_step: Callable[[StepInfo], None],
    world: World,
    device: torch.device,
) -> TrainResult:
    # bad input fails before anything is written
    text = ShardedText.from_patterns(config.train_files, config.max_sentence_tokens)
    dev = _read_dev(config)
    start = _start(config)
    identity = text_identity(text.shards, config.vocab_file)
    checkpoint_path = config.output_dir / CHECKPOINT_NAME
    checkpoint = None
    if config.resume and checkpoint_path.is_file():
        checkpoint = load_checkpoint(checkpoint_path, config.model_dict(start.options), world)
        check_same_text(checkpoint_path, checkpoint["text"], identity, config.allow_changed_text)
    check_same_checkpoint(world, checkpoint, checkpoint_path)
    stats = text.scan(count_words=checkpoint is None and start.vocab is None)
    if checkpoint is not None:
        vocab = Vocabulary(tuple(checkpoint["vocab"]))
    else:
        vocab = start.vocab or Vocabulary.from_counts(stats.counts, config.min_count, config.max_vocab_size)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    if world.is_main:
        _remove_stale_temps(config.output_dir)
    run = _build_run(config, world, device, text, identity, stats, vocab, dev, start, check, on_step)
    if checkpoint is not None:
        _resume(run, checkpoint)
    stopped_by = _train_epochs(run)
    train_loss = _finish(run, stopped_by)
    return _export(run, stopped_by, train_loss)


def _read_dev(config: TrainConfig) -> list[list[str]] | None:
    """The dev sentences (in memory), lines longer than ``max_sentence_tokens`` split."""
    if not config.dev_files:
        return None
    sentences = list(ShardedText.from_patterns(config.dev_files, config.max_sentence_tokens).sentences())
    if not sentences:
        raise TrainingDataError(f"{', '.join(config.dev_files)}: no tokens found in the dev text")
    return sentences


def _start(config: TrainConfig) -> _Start:
    """The architecture, vocabulary and pretrained weights a run starts from.

    Raises:
        ValueError: ``init_from`` is not a model, or its architecture differs from ``config.options``.
    """
    vocab = Vocabulary.read(config.vocab_file) if config.vocab_file is not None else None
    if config.init_from is None:
        return _Start(config.options or SMALL_OPTIONS, vocab, None, None)
    bilm, language_model, reused_vocab = load_pretrained(config.init_from, config.reuse_softmax)
    options = bilm.options
    if config.options is not None and config.options != options:
        differing = "; ".join(
            f"{f.name}: given {getattr(config.options, f.name)!r}, model {getattr(options, f.name)!r}"
            for f in fields(ElmoOptions)
            if getattr(config.options, f.name) != getattr(options, f.name)
        )
        raise ValueError(f"--init-from {config.init_from}: the architecture differs from the one given ({differing})")
    return _Start(options, reused_vocab or vocab, bilm, language_model)


def _remove_stale_temps(output_dir: Path) -> None:
    """The temporary files (and export staging directories) of a run that was killed."""
    for name in (CHECKPOINT_NAME, RESULT_NAME):
        remove_stale_temps(output_dir / name)
    remove_stale_temps(output_dir / MODEL_DIR_NAME, directories=True)


def _build_run(
    config: TrainConfig,
    world: World,
    device: torch.device,
    text: ShardedText,
    identity: dict[str, Any],
    stats: TextStats,
    vocab: Vocabulary,
    dev_sentences: list[list[str]] | None,
    start: _Start,
    check: Callable[[], None],
    on_step: Callable[[StepInfo], None],
) -> _Run:
    """Model (fresh or pretrained weights), optimizer and learning-rate schedule."""
    options = start.options
    max_chars = options.max_characters_per_token
    dev = EncodedCorpus.build(dev_sentences, vocab, max_chars) if dev_sentences is not None else None
    if world.is_main:
        logger.info(
            "training text: %d shard(s), %d sentences, %d predictions per direction, vocabulary %d words",
            len(text.shards),
            stats.sentences,
            stats.predictions,
            len(vocab),
        )
    torch.manual_seed(config.seed)
    if start.language_model is not None:
        model = start.language_model
        model.dropout = torch.nn.Dropout(config.dropout)
    else:
        model = BiLanguageModel(
            options, len(vocab), config.softmax, config.cutoffs, config.share_softmax, config.dropout
        )
        if start.bilm is not None:
            model.bilm.load_state_dict(start.bilm.state_dict())
    model.to(device)
    if world.rank:  # each process draws its own dropout masks
        torch.manual_seed(config.seed * 1_000_003 + world.rank)
    trained: torch.nn.Module = model
    if world.size > 1:
        # Words of an adaptive softmax's tail clusters are missing from many batches.
        adaptive = model.forward_softmax.kind == "adaptive"
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=adaptive
        )
    bilm_parameters = list(model.bilm.parameters())
    bilm_ids = {id(p) for p in bilm_parameters}
    softmax_parameters = [p for p in model.parameters() if id(p) not in bilm_ids]
    optimizer = torch.optim.Adam([{"params": bilm_parameters}, {"params": softmax_parameters}], lr=config.lr)
    batches_per_epoch = count_batches(stats.sentences, config.batch_size, config.shuffle_buffer)
    planned_steps = config.epochs * batches_per_epoch
    if config.max_steps is not None:
        planned_steps = min(planned_steps, config.max_steps)
    factor = _lr_factor(config.lr_schedule, planned_steps)
    warmup = config.softmax_warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, [lambda step: 0.0 if step < warmup else factor(step), factor]
    )
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    return _Run(
        config,
        world,
        device,
        text,
        identity,
        vocab,
        dev,
        batches_per_epoch,
        model,
        trained,
        optimizer,
        scheduler,
        scaler,
        Progress(),
        check,
        on_step,
    )


def _resume(run: _Run, checkpoint: dict[str, Any]) -> None:
    """Weights, optimizer, schedule, progress and random state of ``checkpoint``."""
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.scaler.load_state_dict(checkpoint["scaler"])
    run.progress = Progress(**checkpoint["progress"])
    set_rng_state(checkpoint["rng_states"][run.world.rank], run.device)
    run.log("resumed from %s at epoch %d, step %d", run.checkpoint_path, run.progress.epoch + 1, run.progress.step)


def _train_epochs(run: _Run) -> str:
    """Train until the planned epochs are done or a limit stops it; returns what stopped it."""
    config, progress = run.config, run.progress
    while progress.epoch < config.epochs:
        stopped_by = _train_epoch(run)
        if stopped_by != "epochs":
            return stopped_by
        _end_epoch(run)
    return "epochs"


def _epoch_batches(run: _Run) -> Iterator[list[list[str]]]:
    """The current epoch's batches after those already trained on (a resumed run skips them)."""
    generator = _epoch_generator(run.config.seed, run.progress.epoch)
    batches = epoch_batches(run.text, run.config.batch_size, run.config.shuffle_buffer, generator)
    return itertools.islice(batches, run.progress.batch_in_epoch, None)


def _stop_reason(run: _Run) -> str | None:
    """The limit that stops the run before the next step, if any (the same on every process)."""
    config, progress = run.config, run.progress
    if config.max_steps is not None and progress.step >= config.max_steps:
        return "max_steps"
    if config.max_minutes is not None:
        out_of_time = progress.train_seconds >= 60.0 * config.max_minutes
        if run.world.agree(out_of_time):  # rank 0's clock decides for all
            return "max_minutes"
    return None


def _train_epoch(run: _Run) -> str:
    """The remaining steps of the current epoch: ``"epochs"`` if it ended, else the limit that stopped it."""
    config, progress = run.config, run.progress
    bar = tqdm(
        total=run.batches_per_epoch,
        initial=progress.batch_in_epoch,
        desc=f"epoch {progress.epoch + 1}/{config.epochs}",
        disable=not (config.progress and run.world.is_main),
        unit="batch",
        dynamic_ncols=True,
    )
    run.model.train()
    with bar:
        for batch in _epoch_batches(run):
            run.check()
            stop = _stop_reason(run)
            if stop is not None:
                return stop
            start = time.perf_counter()
            nll, count = _train_step(run, batch)
            run.scheduler.step()
            seconds = time.perf_counter() - start
            progress.train_seconds += seconds
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
            run.on_step(
                StepInfo(
                    step=progress.step,
                    epoch=progress.epoch + 1,
                    batch_in_epoch=progress.batch_in_epoch,
                    loss=nll / (2 * count),
                    tokens=count,
                    sentences=len(batch),
                    longest=max(len(sentence) for sentence in batch),
                    seconds=seconds,
                )
            )
    return "epochs"


def _train_step(run: _Run, batch: list[list[str]]) -> tuple[float, int]:
    """One optimizer step on the mean NLL of both directions over the whole batch (all processes).

    This process computes every ``world.size``-th sentence of the batch; DistributedDataParallel
    averages the gradients, so each process scales its summed NLL by ``world.size / (2 * count)``.

    Returns:
        The batch's summed NLL (both directions, all processes) and its predictions per direction.
    """
    world = run.world
    share, weight = batch[world.rank :: world.size], 1.0
    if not share:  # fewer sentences than processes: compute one, count nothing
        share, weight = batch[:1], 0.0
    count = count_predictions(batch)
    char_ids, targets = encode_batch(share, run.vocab, run.model.bilm.options.max_characters_per_token)
    with run.autocast():
        loss = run.trained(char_ids.to(run.device), targets.to(run.device))
    total = loss.forward_nll.float() + loss.backward_nll.float()
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(total / (2 * count) * (weight * world.size)).backward()
    if run.config.grad_clip:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return world.sum(float(total.detach()) * weight), count


def _end_epoch(run: _Run) -> None:
    """Record the finished epoch (train loss, dev perplexity) and checkpoint it."""
    progress = run.progress
    epoch_loss = progress.epoch_nll / max(2 * progress.epoch_tokens, 1)
    record: dict[str, Any] = {"epoch": progress.epoch + 1, "step": progress.step, "train_loss": epoch_loss}
    perplexity = run.evaluate_dev()
    if perplexity is not None:
        record.update(dev_forward=perplexity.forward, dev_backward=perplexity.backward)
    run.log("epoch %d: %s", progress.epoch + 1, _format_record(record))
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
    run.log("stopped by %s at step %d", stopped_by, progress.step)
    run.save_checkpoint()
    already_evaluated = bool(progress.dev) and progress.dev[-1]["step"] == progress.step
    if run.dev is not None and progress.batch_in_epoch > 0 and not already_evaluated:
        perplexity = run.evaluate_dev()
        assert perplexity is not None  # there is a dev text
        record = {"epoch": progress.epoch + progress.batch_in_epoch / run.batches_per_epoch, "step": progress.step}
        record.update(train_loss=train_loss, dev_forward=perplexity.forward, dev_backward=perplexity.backward)
        run.log("end: %s", _format_record(record))
        progress.dev.append(record)
    return train_loss


def _export(run: _Run, stopped_by: str, train_loss: float) -> TrainResult:
    """Export the model and write ``result.json`` (rank 0); return the result (every process)."""
    config, model, progress = run.config, run.model, run.progress
    model_dir = config.output_dir / MODEL_DIR_NAME
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
        world_size=run.world.size,
        device=str(run.device),
        precision=config.precision,
        shards=len(run.text.shards),
    )
    if run.world.is_main:
        export_model(model.eval(), run.vocab, model_dir, check=run.check)
        write_json(config.output_dir / RESULT_NAME, {"config": config.to_dict(), **result.to_dict()}, check=run.check)
        logger.info("exported %s (%.0f tokens/s)", model_dir, result.tokens_per_second)
    run.world.barrier()  # the export exists when any process returns
    return result


@torch.no_grad()
def evaluate(model: BiLanguageModel, corpus: EncodedCorpus, batch_size: int = 128) -> Perplexity:
    """Perplexity of both directions on ``corpus`` (model put in eval mode; on the model's device)."""
    model.eval()
    device = next(model.parameters()).device
    forward_nll = backward_nll = 0.0
    count = 0
    lengths = [len(sentence) for sentence in corpus.sentences]
    for indices in make_batches(lengths, batch_size):
        char_ids, targets = corpus.batch(indices)
        loss = model(char_ids.to(device), targets.to(device))
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
