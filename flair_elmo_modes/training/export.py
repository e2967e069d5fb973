"""Trained models on disk: the official ELMo files plus the language-model head.

``options.json`` and ``weights.hdf5`` are written by :func:`flair_elmo_modes.bilm.hdf5.save_bilm`
(the layout AllenNLP reads). The softmax and the vocabulary are not part of that layout, so
they go into a third file, ``lm_head.hdf5``, which ELMo users never need but which makes
perplexity reproducible from the exported directory alone:

- attributes ``softmax`` (``"adaptive"``/``"full"``), ``cutoffs``, ``div_value``, ``share_softmax``;
- dataset ``vocab``: the output words in id order, as the uint8 bytes of their UTF-8 text joined
  by newlines (words never contain whitespace; far smaller than an HDF5 string array);
- groups ``forward`` and (unless shared) ``backward``: the softmax's ``state_dict`` tensors under
  their PyTorch names (``adaptive.head.weight`` ...), float32.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch

from flair_elmo_modes import checksums
from flair_elmo_modes.atomic import WriteError, atomic_file, atomic_write_json, hdf5_errors, hdf5_file, temp_path
from flair_elmo_modes.bilm.errors import ElmoFileError, require_file
from flair_elmo_modes.bilm.hdf5 import load_bilm, save_bilm
from flair_elmo_modes.training.data import Vocabulary
from flair_elmo_modes.training.lm import BiLanguageModel, Softmax

LM_HEAD_NAME = "lm_head.hdf5"
#: The files an export writes, and its SHA256SUMS lists.
EXPORTED_FILES = ("options.json", "weights.hdf5", LM_HEAD_NAME)


def export_model(
    model: BiLanguageModel, vocab: Vocabulary, directory: str | Path, check: Callable[[], None] | None = None
) -> Path:
    """Write ``options.json``, ``weights.hdf5`` and ``lm_head.hdf5`` into ``directory``.

    The directory is replaced as a whole: files are written into a temporary sibling named as
    :func:`~flair_elmo_modes.atomic.temp_path` names it (``.model.{hex}.tmp``, removed by
    ``remove_stale_temps(directory, directories=True)`` after a crash), which then takes the
    directory's place (other files in an existing ``directory`` are kept). ``check`` runs just
    before that swap; an exception it raises keeps the old directory.

    Raises:
        WriteError: a file could not be written (disk full); names ``directory``.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = temp_path(directory)
    try:
        staging.mkdir(mode=0o755)
        if directory.is_dir():
            for path in directory.iterdir():
                if path.is_file():
                    shutil.copy2(path, staging / path.name)
        save_bilm(staging, model.bilm)
        write_lm_head(staging / LM_HEAD_NAME, model, vocab)
        # HDF5 keeps no checksum of its data: the sidecar lets loading (and sha256sum -c) catch damage.
        checksums.write_sums(staging, EXPORTED_FILES)
        # A model directory is meant to be shared, whatever the umask made of the new entries.
        staging.chmod(0o755)
        for path in staging.iterdir():
            path.chmod(0o644)
        if check is not None:
            check()
        _replace_directory(staging, directory)
    except (OSError, RuntimeError) as error:  # h5py reports a failed write as RuntimeError
        raise WriteError.from_error(directory, error) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _replace_directory(new: Path, target: Path) -> None:
    """Put ``new`` in ``target``'s place; ``target`` is never left half written."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def write_lm_head(path: str | Path, model: BiLanguageModel, vocab: Vocabulary) -> None:
    """Write the softmax(es) and the vocabulary of ``model`` (layout in the module docstring), atomically."""
    softmax = model.forward_softmax
    with atomic_file(path) as guard, hdf5_file(guard) as handle, hdf5_errors(guard):
        handle.attrs["softmax"] = softmax.kind
        handle.attrs["cutoffs"] = np.asarray(softmax.cutoffs, dtype=np.int64)
        handle.attrs["div_value"] = softmax.adaptive.div_value if softmax.kind == "adaptive" else 0.0
        handle.attrs["share_softmax"] = model.share_softmax
        joined = "\n".join(vocab.words).encode("utf-8")
        handle.create_dataset("vocab", data=np.frombuffer(joined, dtype=np.uint8))
        directions = [("forward", model.forward_softmax)]
        if not model.share_softmax:
            directions.append(("backward", model.backward_softmax))
        for group_name, module in directions:
            group = handle.create_group(group_name)
            for name, value in module.state_dict().items():
                group.create_dataset(name, data=value.detach().to("cpu", torch.float32).numpy())


def load_language_model(directory: str | Path) -> tuple[BiLanguageModel, Vocabulary]:
    """The :class:`BiLanguageModel` and vocabulary exported by :func:`export_model` (eval mode).

    Raises:
        FileNotFoundError: a file is missing; the message names it.
        ValueError: ``lm_head.hdf5`` does not match the vocabulary or the biLM.
    """
    directory = Path(directory)
    bilm = load_bilm(directory / "options.json", directory / "weights.hdf5")
    head_path = directory / LM_HEAD_NAME
    require_file(head_path, "language-model head (written by flair-elmo train)")
    checksums.verify(head_path)
    try:
        with h5py.File(head_path, "r") as handle:
            kind = str(handle.attrs["softmax"])
            cutoffs = tuple(int(c) for c in handle.attrs["cutoffs"])
            share = bool(handle.attrs["share_softmax"])
            div_value = float(handle.attrs["div_value"])
            words = tuple(np.asarray(handle["vocab"][...], dtype=np.uint8).tobytes().decode("utf-8").split("\n"))
            states = {
                group: {name: torch.from_numpy(np.asarray(data[...])) for name, data in _datasets(handle[group])}
                for group in (("forward",) if share else ("forward", "backward"))
            }
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:  # h5py's, numpy's, UTF-8's
        raise ElmoFileError(
            f"{head_path}: not a readable language-model head (damaged or truncated: {error})"
        ) from error
    vocab = Vocabulary(words)
    model = BiLanguageModel(
        bilm.options, len(vocab), kind, cutoffs, share_softmax=share, dropout=0.0, div_value=div_value or 4.0
    )
    model.bilm = bilm
    for group, state in states.items():
        module: Softmax = model.forward_softmax if group == "forward" else model.backward_softmax
        try:
            module.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(f"{head_path}: group '{group}' does not fit {len(vocab)} words ({error})") from error
    return model.eval(), vocab


def _datasets(group: h5py.Group) -> list[tuple[str, h5py.Dataset]]:
    found: list[tuple[str, h5py.Dataset]] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append((name.replace("/", "."), obj))

    group.visititems(visit)
    return found


def write_json(path: str | Path, data: object, check: Callable[[], None] | None = None) -> None:
    """Write JSON atomically (:func:`~flair_elmo_modes.atomic.atomic_write_json`); ``check`` runs before the rename.

    JSON has no NaN or infinity: such floats are written as ``null`` (the train loss of a run
    stopped at an epoch boundary is NaN).
    """
    atomic_write_json(path, _finite_or_none(data), before_commit=check)


def _finite_or_none(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value
