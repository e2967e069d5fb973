"""The training checkpoint, ``output_dir/checkpoint.pt``: what it holds, writing it, reading it back.

A checkpoint is a ``torch.save`` of a dict that holds only tensors and plain data (:data:`FIELDS`),
so that it is read back with ``torch.load(weights_only=True)``: a planted file whose pickle would
create other objects (or run code) is refused without being executed. It is written atomically
(:func:`~flair_elmo_modes.atomic.atomic_file`): a failed or interrupted write keeps the previous
checkpoint. :func:`load_checkpoint` checks every field before the trainer uses it, and
:func:`check_same_text` and :func:`check_same_checkpoint` that the run may resume from it; their
errors name the file and the field.
"""

from __future__ import annotations

import logging
import pickle
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from flair_elmo_modes.atomic import atomic_file
from flair_elmo_modes.bilm.errors import weights_only_refusal
from flair_elmo_modes.training.data import TrainingDataError
from flair_elmo_modes.training.distributed import World
from flair_elmo_modes.training.shards import text_changes

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"

#: What a checkpoint holds: each key with its type, in the order :func:`load_checkpoint` checks them.
FIELDS: dict[str, type] = {
    "config": dict,  # TrainConfig.model_dict: what a resumed run must share with the run that wrote it
    "vocab": list,  # the output words, in id order (strings)
    "model": dict,  # the BiLanguageModel's state_dict
    "optimizer": dict,  # Adam's state_dict
    "scheduler": dict,  # the learning-rate schedule's (LambdaLR) state_dict
    "scaler": dict,  # the fp16 gradient scaler's state_dict (empty unless fp16)
    "progress": dict,  # Progress as a dict: exactly its fields
    "rng_states": list,  # every process's random state (rng_state), in rank order
    "text": dict,  # shards.text_identity of the training text and vocabulary file
    "world_size": int,  # the number of processes that trained
}

_PLAIN_TYPES = (str, int, float, bool, type(None))


@dataclass
class Progress:
    """Where training is; saved in the checkpoint (``"progress"``).

    Attributes:
        epoch: epochs completed.
        batch_in_epoch: batches of the current epoch trained on.
        step: optimizer steps in all.
        train_tokens: predictions per direction trained on.
        train_seconds: training time (evaluation excluded).
        epoch_nll: summed NLL of both directions in the current epoch.
        epoch_tokens: predictions per direction in the current epoch.
        dev: one record per evaluation (epoch, step, train loss, dev perplexities).
    """

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    train_tokens: int = 0
    train_seconds: float = 0.0
    epoch_nll: float = 0.0
    epoch_tokens: int = 0
    dev: list[dict[str, Any]] = field(default_factory=list)


def checkpoint_state(
    *,
    config: dict[str, Any],
    text: dict[str, Any],
    world_size: int,
    vocab: list[str],
    model: dict[str, Any],
    optimizer: dict[str, Any],
    scheduler: dict[str, Any],
    scaler: dict[str, Any],
    progress: dict[str, Any],
    rng_states: list[dict[str, torch.Tensor]],
) -> dict[str, Any]:
    """The dict a checkpoint holds (:data:`FIELDS`), in the order it is written."""
    return {
        "config": config,
        "text": text,
        "world_size": world_size,
        "vocab": vocab,
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "scaler": scaler,
        "progress": progress,
        "rng_states": rng_states,
    }


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's random state: the CPU's, and the GPU's on CUDA."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore a random state of :func:`rng_state`."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def write_checkpoint(path: Path, state: dict[str, Any], check: Callable[[], None] | None = None) -> None:
    """Write a checkpoint atomically (:func:`~flair_elmo_modes.atomic.atomic_file`).

    It must hold only tensors and plain data, so that :func:`load_checkpoint` can read it with
    ``weights_only=True``. ``check`` runs just before the rename. A failed write (disk full) is a
    :class:`~flair_elmo_modes.atomic.WriteError` naming the file; the old one is kept.

    Raises:
        TypeError: ``state`` holds something else (nothing is written).
    """
    problem = _not_plain(state, "checkpoint")
    if problem is not None:  # a bug here, not bad input: the checkpoint could not be resumed from
        raise TypeError(
            f"{path}: {problem} is not a tensor or plain data; torch.load(weights_only=True) would refuse it"
        )
    with atomic_file(path, before_commit=check) as handle:
        torch.save(state, handle)


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


def load_checkpoint(path: Path, expected: dict[str, Any], world: World) -> dict[str, Any]:
    """Read a checkpoint and check that it was made with the same config and number of processes.

    Args:
        path: the checkpoint.
        expected: ``TrainConfig.model_dict`` of this run.
        world: this run's processes.

    Loads with ``weights_only=True``: a pickle that would create other objects (or run code) is
    refused without being executed.

    Raises:
        ValueError: not a readable checkpoint (naming the field that is missing or of the wrong
            type), or one of another config or number of processes.
    """

    def unreadable(reason: str) -> ValueError:
        return ValueError(f"{path}: not a readable training checkpoint ({reason}); delete it to start over")

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = weights_only_refusal(error)
        raise unreadable(f"it holds more than tensors and plain data: {reason}") from error
    except Exception as error:  # zip, EOF and torch errors all mean "not a usable checkpoint"
        raise unreadable(str(error)) from error
    if not isinstance(checkpoint, dict):
        raise unreadable(f"found a {type(checkpoint).__name__}; expected a dict with {', '.join(FIELDS)}")
    for key, kind in FIELDS.items():
        if key not in checkpoint:
            raise unreadable(f"'{key}' is missing")
        if not isinstance(checkpoint[key], kind):
            raise unreadable(f"'{key}' is a {type(checkpoint[key]).__name__}; expected a {kind.__name__}")
    if not all(isinstance(word, str) for word in checkpoint["vocab"]):
        raise unreadable("'vocab' holds something other than strings")
    expected_progress = {f.name for f in fields(Progress)}
    if set(checkpoint["progress"]) != expected_progress:
        raise unreadable(f"'progress' has keys {sorted(checkpoint['progress'])}; expected {sorted(expected_progress)}")
    found = checkpoint["config"]
    differing = sorted(key for key in expected if found.get(key) != expected[key])
    if differing:
        details = "; ".join(f"{key}: checkpoint {found.get(key)!r}, config {expected[key]!r}" for key in differing)
        raise ValueError(f"{path} was made with a different config ({details}); use another output directory")
    if checkpoint["world_size"] != world.size or len(checkpoint["rng_states"]) != world.size:
        raise ValueError(
            f"{path} was made by {checkpoint['world_size']} process(es), this run has {world.size}: resume with "
            f"torchrun --nproc_per_node {checkpoint['world_size']} (or as many processes on several machines), "
            "or use another output directory"
        )
    return checkpoint


def check_same_text(path: Path, recorded: dict[str, Any], current: dict[str, Any], allow_changed: bool) -> None:
    """A checkpoint resumes only on the bytes it was trained on (see ``shards.text_identity``).

    Raises:
        TrainingDataError: a shard or the vocabulary file changed, was added or removed (unless
            ``allow_changed``, which logs a warning instead).
    """
    changes = text_changes(recorded, current)
    if not changes:
        return
    more = f" (and {len(changes) - 1} more change(s))" if len(changes) > 1 else ""
    if allow_changed:
        logger.warning(
            "resuming on changed text: %s%s since %s; its vocabulary and batch plan were made for the old text",
            changes[0], more, path,
        )  # fmt: skip
        return
    raise TrainingDataError(
        f"{changes[0]}{more} since {path} was written: its vocabulary and batch plan belong to the old text; "
        "train into a new --output to start over, or pass --allow-changed-text to continue knowingly"
    )


def check_same_checkpoint(world: World, checkpoint: dict[str, Any] | None, path: Path) -> None:
    """Every process must resume from the same checkpoint (or none): ``--output`` must be shared.

    Raises:
        ValueError: processes see different checkpoints.
    """
    step = -1 if checkpoint is None else int(checkpoint["progress"]["step"])
    steps = world.gather(step)
    if len(set(steps)) > 1:
        seen = ", ".join(f"rank {rank}: {'none' if s < 0 else f'step {s}'}" for rank, s in enumerate(steps))
        raise ValueError(
            f"{path}: the processes see different checkpoints ({seen}); the output directory must be on a "
            "filesystem that every machine of the run shares"
        )
