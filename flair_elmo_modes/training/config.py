"""What a training run needs to know, parsed once into a frozen :class:`TrainConfig`."""

from __future__ import annotations

import dataclasses
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


@dataclass(frozen=True)
class TrainConfig:
    """A training run of the forward and backward ELMo language models.

    Attributes:
        train_file: text, one whitespace-tokenized sentence per line.
        output_dir: receives ``checkpoint.pt``, ``result.json`` and the exported ``model/``.
        dev_file: text for the perplexity after each epoch (optional).
        options: the biLM architecture.
        min_count: words seen fewer times in ``train_file`` become ``<UNK>``.
        max_vocab_size: at most this many output words, specials included (None: no limit).
        softmax: ``"adaptive"`` (:class:`torch.nn.AdaptiveLogSoftmaxWithLoss`) or ``"full"``.
        cutoffs: cluster boundaries of the adaptive softmax.
        share_softmax: one softmax for both directions (as bilm-tf) instead of one each.
        dropout: on the token vectors and the top layer.
        batch_size: sentences per step.
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
        num_threads: ``torch.set_num_threads`` during training (None: leave as is).
        eval_batch_size: sentences per batch when computing perplexity.
        progress: show a tqdm progress bar on stderr.
    """

    train_file: Path
    output_dir: Path
    dev_file: Path | None = None
    options: ElmoOptions = SMALL_OPTIONS
    min_count: int = 1
    max_vocab_size: int | None = None
    softmax: str = "adaptive"
    cutoffs: tuple[int, ...] = (2000, 10000)
    share_softmax: bool = True
    dropout: float = 0.1
    batch_size: int = 64
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
    num_threads: int | None = None
    eval_batch_size: int = 128
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_file", Path(self.train_file))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.dev_file is not None:
            object.__setattr__(self, "dev_file", Path(self.dev_file))
        object.__setattr__(self, "cutoffs", tuple(self.cutoffs))
        checks = [
            (self.softmax in SOFTMAX_KINDS, f"softmax must be one of {SOFTMAX_KINDS}, got {self.softmax!r}"),
            (self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"),
            (self.min_count >= 1, f"min_count must be >= 1, got {self.min_count}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
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

    def model_dict(self) -> dict[str, Any]:
        """The fields that define the model and its data; a resumed run must match them."""
        return {
            "train_file": str(self.train_file.resolve()),
            "options": self.options.to_dict(),
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
        raw["options"] = self.options.to_dict()
        for key in ("train_file", "output_dir", "dev_file"):
            raw[key] = None if raw[key] is None else str(raw[key])
        raw["cutoffs"] = list(self.cutoffs)
        return raw
