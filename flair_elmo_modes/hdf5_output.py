"""The HDF5 file of allennlp 0.9's ``allennlp elmo``: written here for ``flair-elmo embed`` and
:meth:`ElmoEmbedder.embed_file <flair_elmo_modes.embedder.ElmoEmbedder.embed_file>` alike.

Layout:
  ``"0"``, ``"1"``, ...   one float32 dataset per line (0-based), or one per sentence named by
                          the sentence with ``use_sentence_keys``; of shape ``(L + 1, T, D)`` for
                          ``all``, ``(T, D)`` for ``top`` and ``average``, ``(k, T, D)`` for a
                          list of ``k`` layers (in that order), for ``T`` tokens, ``L`` LSTM
                          layers and ``D = 2 * projection_dim``.
  ``"sentence_to_index"`` shape ``(1,)``: the JSON ``{"sentence": "index"}``, a later duplicate
                          wins (not written with ``forget_sentences`` or ``use_sentence_keys``).

The file is written through :func:`~flair_elmo_modes.atomic.atomic_file`: a failed or
interrupted run leaves no partial file and keeps an existing one as it was, and a full disk
is one :class:`~flair_elmo_modes.atomic.WriteError` naming the file.

Importing this module is cheap; h5py and torch are imported when a file is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flair_elmo_modes.atomic import atomic_file, hdf5_errors, hdf5_file, remove_stale_temps

if TYPE_CHECKING:
    import numpy as np
    import torch

    from flair_elmo_modes.layers import LayerMode
    from flair_elmo_modes.runner import BiLmRunner
    from flair_elmo_modes.text import Line

#: Sentences per biLM call (allennlp 0.9's ``ElmoEmbedder`` default).
DEFAULT_BATCH_SIZE = 64
#: Batches read ahead and batched by length: a window of 2,048 lines at a batch size of 64.
DEFAULT_SORT_BATCHES = 32
#: At most this many line numbers are listed in one error message.
MAX_LISTED = 10


class EmbedInputError(ValueError):
    """Input lines that cannot be embedded: empty lines, or sentences unfit to name datasets."""


@dataclass(frozen=True)
class EmbedSummary:
    """What :func:`write_embeddings` wrote: sentences and tokens."""

    sentences: int
    tokens: int


def _quote(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _list_lines(numbers: Sequence[int]) -> str:
    listed = ", ".join(str(n) for n in numbers[:MAX_LISTED])
    return listed + (f" and {len(numbers) - MAX_LISTED} more" if len(numbers) > MAX_LISTED else "")


def input_lines(path: Path) -> Iterator[Line]:
    """The lines of the input file ``path`` (:func:`~flair_elmo_modes.text.file_lines`), its reading
    failures as :class:`~flair_elmo_modes.errors.UsageError` (the caller's input is bad).

    Raises:
        UsageError: the file cannot be opened, or is not valid UTF-8 (names line and column).
    """
    from flair_elmo_modes.errors import UsageError
    from flair_elmo_modes.text import TextError, file_lines

    try:
        yield from file_lines(Path(path))
    except TextError as error:
        raise UsageError(str(error)) from None


def check_input(path: Path, use_sentence_keys: bool, keys_name: str = "--use-sentence-keys") -> int:
    """First, cheap pass over an input file (``flair-elmo embed``'s, each shard of a corpus job):
    the number of sentences.

    Raises:
        UsageError: the file cannot be read, is empty, or has lines that cannot be embedded
            (see :func:`input_problems`); names the file and the lines.
    """
    from flair_elmo_modes.errors import UsageError

    count, problems = input_problems(input_lines(path), use_sentence_keys, keys_name=keys_name)
    if problems:
        raise UsageError(f"{path}: " + "; ".join(problems))
    if count == 0:
        raise UsageError(f"{path}: no sentences (the file is empty)")
    return count


def input_problems(
    lines: Iterable[Line], use_sentence_keys: bool, keys_name: str = "use_sentence_keys"
) -> tuple[int, list[str]]:
    """The number of lines and what keeps them from being embedded (an empty list if nothing).

    Reports every empty line (allennlp's rule), and with ``use_sentence_keys`` every repeated
    sentence and every sentence that cannot name an HDF5 dataset, followed by a hint to drop
    ``keys_name`` (the option's name for the caller: the CLI's ``--use-sentence-keys``).
    Memory holds only the sentences needed for the duplicate check.
    """
    empty: list[int] = []
    first_seen: dict[str, int] = {}
    repeats: list[str] = []
    bad_keys: list[int] = []
    count = 0
    for line in lines:
        count += 1
        if not line.text:
            empty.append(line.number)
        elif use_sentence_keys:
            if "/" in line.text or "\x00" in line.text or line.text == ".":
                bad_keys.append(line.number)
            elif line.text in first_seen:
                repeats.append(f"line {line.number} repeats line {first_seen[line.text]} ({_quote(line.text)})")
            else:
                first_seen[line.text] = line.number
    problems = []
    if empty:
        what = "an empty line" if len(empty) == 1 else f"{len(empty)} empty lines"
        problems.append(f"{what} at line{'s' if len(empty) > 1 else ''} {_list_lines(empty)}; remove them")
    if repeats:
        listed = ", ".join(repeats[:MAX_LISTED]) + (
            f" and {len(repeats) - MAX_LISTED} more" if len(repeats) > MAX_LISTED else ""
        )
        problems.append(f"{keys_name} needs distinct sentences, but {listed}")
    if bad_keys:
        problems.append(
            f"{keys_name}: line{'s' if len(bad_keys) > 1 else ''} {_list_lines(bad_keys)} cannot name "
            "an HDF5 dataset ('/' separates groups, NUL ends a name, '.' is the file itself)"
        )
    if repeats or bad_keys:
        problems.append(f"drop {keys_name} to name datasets by line index")
    return count, problems


def select_output(layers: torch.Tensor, mode: LayerMode) -> np.ndarray:
    """What the file stores for one sentence.

    Args:
        layers: ``(L + 1, T, D)`` float32 biLM layers.
        mode: ``all``, ``top``, ``average`` or a list of layers.

    Returns:
        ``(L + 1, T, D)``, ``(T, D)``, ``(T, D)`` or ``(len(indices), T, D)``; layers stay
        stacked (not concatenated as in the Flair embeddings), as in allennlp's file.
    """
    from flair_elmo_modes.layers import chosen_layers

    chosen = chosen_layers(layers, mode)  # (k, T, D)
    return (chosen[0] if mode.kind in ("top", "average") else chosen).float().cpu().numpy()


def write_embeddings(
    output: str | Path,
    lines: Iterable[Line],
    runner: BiLmRunner,
    mode: LayerMode,
    batch_size: int,
    sort_batches: int = 1,
    use_sentence_keys: bool = False,
    forget_sentences: bool = False,
    expected_lines: int | None = None,
    check: Callable[[], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> EmbedSummary:
    """Embed ``lines`` with ``runner`` into the HDF5 file ``output`` (layout in the module docstring).

    Temporary files of ``output`` left by a killed run are removed first.

    Args:
        output: the file to write; replaced only when everything succeeded.
        lines: the stripped input lines, read lazily (tokens are separated by whitespace).
        runner: the biLM.
        mode: the layers to store.
        batch_size: sentences per biLM call.
        sort_batches: read ``sort_batches * batch_size`` lines at a time and batch them by
            length (see :func:`~flair_elmo_modes.runner.length_sorted_windows`); 1 keeps the order.
        use_sentence_keys: name each dataset by its sentence; no ``sentence_to_index``.
        forget_sentences: do not write ``sentence_to_index``.
        expected_lines: the number of lines an earlier pass counted; another count is an error.
        check: called after every batch and just before the rename; an exception it raises
            (the CLI's ``Interrupted``) stops the run and keeps the old file.
        progress: called with the number of lines of every batch once they are written.

    Raises:
        EmbedInputError: an empty line, or not ``expected_lines`` lines.
        WriteError: the file could not be written (disk full, I/O error); names ``output``.
    """
    import h5py

    from flair_elmo_modes.runner import length_sorted_windows

    output = Path(output)
    remove_stale_temps(output)
    keep_index = not (forget_sentences or use_sentence_keys)
    sentence_to_index: dict[str, str] = {}
    done = tokens = 0
    with atomic_file(output, before_commit=check) as guard, hdf5_file(guard) as handle:
        items = ((line, line.text.split()) for line in lines)
        for window, batches in length_sorted_windows(items, lambda item: len(item[1]), batch_size, sort_batches):
            empty = [line.number for line, words in window if not words]
            if empty:
                raise EmbedInputError(f"line {empty[0]} is empty")
            keys = [line.text if use_sentence_keys else str(done + row) for row, (line, _) in enumerate(window)]
            for rows in batches:
                result = runner.run([window[row][1] for row in rows])
                lengths = result.mask.sum(dim=-1).tolist()
                for i, row in enumerate(rows):
                    data = select_output(result.layers[:, i, : lengths[i]], mode)
                    with hdf5_errors(guard):
                        handle.create_dataset(keys[row], data.shape, dtype="float32", data=data)
                    tokens += lengths[i]
                guard.check()  # a failed write stops the run now, not after the last line
                if check is not None:
                    check()
                if progress is not None:
                    progress(len(rows))
            if keep_index:
                sentence_to_index.update((line.text, key) for (line, _), key in zip(window, keys, strict=True))
            done += len(window)
        if expected_lines is not None and done != expected_lines:
            raise EmbedInputError(f"{expected_lines} lines, then {done}")
        if keep_index:
            with hdf5_errors(guard):
                dataset = handle.create_dataset("sentence_to_index", (1,), dtype=h5py.string_dtype())
                dataset[0] = json.dumps(sentence_to_index)
    return EmbedSummary(done, tokens)
