"""What a training run needs to know, parsed once into a frozen :class:`TrainConfig`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flair_elmo_modes.bilm.options import ElmoOptions
from flair_elmo_modes.training.lm import SOFTMAX_KINDS

#: A small ELMo (the published "small" model scaled down): 16-dim characters, filters summing
#: to 512, one highway layer, 2 layers of 512 cells projected to 128 (256-dim token vectors).
SMALL_OPTIONS = ElmoOptions(
    char_embedding_dim=16,
    filters=((1, 32), (2, 32), (3, 64), (4, 128), (5, 256)),
    n_highway=1,
    activation="relu",
    n_characters=262,
    max_characters_per_token=50,
    cell_dim=512,
    projection_dim=128,
    n_layers=2,
    cell_clip=3.0,
    proj_clip=3.0,
    use_skip_connections=True,
)

LR_SCHEDULES = ("constant", "linear")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """A training run of the forward and backward ELMo language models.

    Attributes:
        train_files: the training text: files, directories and globs of shards, one
            whitespace-tokenized sentence per line (streamed, see :mod:`flair_elmo_modes.training.shards`).
        output_dir: receives ``checkpoint.pt``, ``result.json`` and the exported ``model/``.
        dev_files: text for the perplexity after each epoch (files, directories or globs; read
            into memory; none: no dev perplexity).
        options: the biLM architecture (None: that of ``init_from``, else :data:`SMALL_OPTIONS`).
        vocab_file: the output words, in bilm-tf's format (see ``Vocabulary.read``); None: counted
            in the training text.
        min_count: words seen fewer times in the training text become ``<UNK>`` (counted vocabulary).
        max_vocab_size: at most this many output words, specials included (None: no limit).
        softmax: ``"adaptive"`` (:class:`torch.nn.AdaptiveLogSoftmaxWithLoss`) or ``"full"``.
        cutoffs: cluster boundaries of the adaptive softmax.
        share_softmax: one softmax for both directions (as bilm-tf) instead of one each.
        dropout: on the token vectors and the top layer.
        batch_size: sentences per step, over all processes of a distributed run.
        shuffle_buffer: sentences shuffled together (the corpus is read in buffers of this many).
        max_sentence_tokens: longer lines (of the training and dev text) are split into pieces
            of at most this many tokens, each a sentence of its own: a step's memory grows with
            its longest sentence (0: no limit).
        epochs: passes over ``train_file``.
        lr: Adam learning rate.
        lr_schedule: ``"constant"``, or ``"linear"`` decay to ``lr / 10`` over the planned steps.
        grad_clip: maximum gradient norm (0: no clipping).
        seed: seeds weights, dropout and batch order.
        max_steps: stop after this many steps in all (None: no limit).
        max_minutes: stop after this much training time, counted across resumes (None: no limit).
        checkpoint_every: also checkpoint every this many steps (0: only after each epoch).
        resume: continue from ``output_dir/checkpoint.pt`` when it exists.
        allow_changed_text: resume even if a shard or the vocabulary file changed since the checkpoint
            (a warning names them): the checkpoint's vocabulary and batch plan then meet other text.
        num_threads: ``torch.set_num_threads`` during training (None: leave as is).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (None: CUDA when available, else CPU; each
            process of a distributed CUDA run takes the GPU of its local rank).
        precision: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` mixed precision through ``torch.autocast``
            (fp16 with a gradient scaler).
        init_from: start the biLM from this model (a name, a directory with options.json and
            weights.hdf5, or a ``flair-elmo train`` export): domain adaptation.
        reuse_softmax: with ``init_from`` an export holding ``lm_head.hdf5``: keep its vocabulary
            and softmax instead of building new ones from the training text.
        softmax_warmup_steps: the first this many steps train the softmax only (the biLM's
            learning rate is 0): a new softmax settles before it moves the pretrained biLM.
        eval_batch_size: sentences per batch when computing perplexity.
        progress: show a tqdm progress bar on stderr.
    """

    train_files: tuple[str, ...]
    output_dir: Path
    dev_files: tuple[str, ...] = ()
    options: ElmoOptions | None = None
    vocab_file: Path | None = None
    min_count: int = 1
    max_vocab_size: int | None = None
    softmax: str = "adaptive"
    cutoffs: tuple[int, ...] = (2000, 10000)
    share_softmax: bool = True
    dropout: float = 0.1
    batch_size: int = 64
    shuffle_buffer: int = 100_000
    max_sentence_tokens: int = 400
    epochs: int = 1
    lr: float = 1e-3
    lr_schedule: str = "constant"
    grad_clip: float = 5.0
    seed: int = 0
    max_steps: int | None = None
    max_minutes: float | None = None
    checkpoint_every: int = 500
    resume: bool = True
    allow_changed_text: bool = False
    num_threads: int | None = None
    device: str | None = None
    precision: str = "fp32"
    init_from: str | None = None
    reuse_softmax: bool = False
    softmax_warmup_steps: int = 0
    eval_batch_size: int = 128
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_files", _patterns(self.train_files))
        object.__setattr__(self, "dev_files", _patterns(self.dev_files))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.vocab_file is not None:
            object.__setattr__(self, "vocab_file", Path(self.vocab_file))
        if self.init_from is not None:
            object.__setattr__(self, "init_from", str(self.init_from))
        object.__setattr__(self, "cutoffs", tuple(self.cutoffs))
        checks = [
            (self.softmax in SOFTMAX_KINDS, f"softmax must be one of {SOFTMAX_KINDS}, got {self.softmax!r}"),
            (self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"),
            (self.min_count >= 1, f"min_count must be >= 1, got {self.min_count}"),
            (bool(self.train_files), "no training text given"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.shuffle_buffer >= 1, f"shuffle_buffer must be >= 1, got {self.shuffle_buffer}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}"),
            (
                self.softmax_warmup_steps >= 0,
                f"softmax_warmup_steps must be >= 0, got {self.softmax_warmup_steps}",
            ),
            (not self.reuse_softmax or self.init_from is not None, "reuse_softmax needs init_from"),
            (
                not (self.reuse_softmax and self.vocab_file is not None),
                "reuse_softmax keeps the vocabulary of init_from: give no vocab_file",
            ),
            (
                self.max_sentence_tokens >= 0,
                f"max_sentence_tokens must be >= 0 (0: no limit), got {self.max_sentence_tokens}",
            ),
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}"),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.max_minutes is None or self.max_minutes > 0, f"max_minutes must be > 0, got {self.max_minutes}"),
            (self.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {self.checkpoint_every}"),
            (self.num_threads is None or self.num_threads >= 1, f"num_threads must be >= 1, got {self.num_threads}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def model_dict(self, options: ElmoOptions) -> dict[str, Any]:
        """What defines the model and its steps; a resumed run must match it. (The text itself, its
        shards and their bytes, is checked separately: ``shards.text_identity``.)

        Args:
            options: the architecture in use (``options`` or that of ``init_from``).
        """
        return {
            "options": options.to_dict(),
            "vocab_file": None if self.vocab_file is None else str(self.vocab_file.resolve()),
            "init_from": self.init_from,
            "reuse_softmax": self.reuse_softmax,
            "softmax_warmup_steps": self.softmax_warmup_steps,
            "shuffle_buffer": self.shuffle_buffer,
            "min_count": self.min_count,
            "max_vocab_size": self.max_vocab_size,
            "softmax": self.softmax,
            "cutoffs": list(self.cutoffs),
            "share_softmax": self.share_softmax,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "max_sentence_tokens": self.max_sentence_tokens,
        }

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-friendly values."""
        raw = dataclasses.asdict(self)
        raw["options"] = None if self.options is None else self.options.to_dict()
        for key in ("output_dir", "vocab_file"):
            raw[key] = None if raw[key] is None else str(raw[key])
        for key in ("train_files", "dev_files", "cutoffs"):
            raw[key] = list(raw[key])
        return raw


def _patterns(value: str | Path | Sequence[str | Path]) -> tuple[str, ...]:
    """One pattern or several, as a tuple of strings."""
    if isinstance(value, (str, Path)):
        return (str(value),)
    return tuple(str(item) for item in value)
