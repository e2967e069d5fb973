"""Official ELMo files: read and validate ``weights.hdf5`` against ``options.json``, and write them.

The weights are bilm-tf (TensorFlow) variables. Their conversion to this package's PyTorch
modules happens here and nowhere else; every conversion is commented where it happens.
This is the only module that imports h5py.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from flair_elmo_modes import checksums
from flair_elmo_modes.atomic import atomic_file, atomic_write_json, hdf5_errors, hdf5_file
from flair_elmo_modes.bilm.errors import ElmoFileError, require_file
from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.bilm.options import ElmoOptions

# bilm-tf packs LSTM gates as (i, j, f, o) = (input, candidate, forget, output); we use
# (input, forget, candidate, output) like torch.nn.LSTM. Both directions of this permutation.
_TF_TO_TORCH_GATES = (0, 2, 1, 3)
_TORCH_TO_TF_GATES = (0, 2, 1, 3)
_TF_FORGET_GATE = 2


def _lstm_prefix(direction: int, layer: int) -> str:
    return f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell"


def expected_shapes(options: ElmoOptions) -> dict[str, tuple[int, ...]]:
    """Every dataset of an official ``weights.hdf5`` for ``options``, with its shape."""
    emb, n_filters = options.char_embedding_dim, options.n_filters
    cell, proj = options.cell_dim, options.projection_dim
    shapes: dict[str, tuple[int, ...]] = {"char_embed": (options.char_embedding_rows - 1, emb)}
    for i, (width, count) in enumerate(options.filters):
        shapes[f"CNN/W_cnn_{i}"] = (1, width, emb, count)
        shapes[f"CNN/b_cnn_{i}"] = (count,)
    for k in range(options.n_highway):
        for name in ("W_carry", "W_transform"):
            shapes[f"CNN_high_{k}/{name}"] = (n_filters, n_filters)
        for name in ("b_carry", "b_transform"):
            shapes[f"CNN_high_{k}/{name}"] = (n_filters,)
    shapes["CNN_proj/W_proj"] = (n_filters, proj)
    shapes["CNN_proj/b_proj"] = (proj,)
    for direction in (0, 1):
        for layer in range(options.n_layers):
            prefix = _lstm_prefix(direction, layer)
            shapes[f"{prefix}/W_0"] = (proj + proj, 4 * cell)  # rows: [input; previous hidden]
            shapes[f"{prefix}/B"] = (4 * cell,)
            shapes[f"{prefix}/W_P_0"] = (cell, proj)
    return shapes


def _describe(options: ElmoOptions) -> str:
    return (
        f"char_cnn.embedding.dim={options.char_embedding_dim}, char_cnn.filters={[list(f) for f in options.filters]}, "
        f"char_cnn.n_highway={options.n_highway}, lstm.dim={options.cell_dim}, "
        f"lstm.projection_dim={options.projection_dim}, lstm.n_layers={options.n_layers}"
    )


def read_weights(path: str | Path, options: ElmoOptions, options_name: str = "options") -> dict[str, np.ndarray]:
    """Read every dataset of an official weight file, checking it against ``options``.

    Every dataset must exist, have the shape ``options`` implies, hold floating-point numbers
    (an integer, bool or complex dataset is refused, not cast) and be finite after the cast to
    float32 (NaN or an infinity would only surface as NaN vectors).

    Returns:
        The datasets by name, float32.

    Raises:
        FileNotFoundError: no file at ``path``.
        ElmoFileError: not HDF5, truncated, or a dataset missing, of the wrong shape or dtype, or
            not finite; the message names the file, the dataset, what was found and what was expected.
    """
    path = require_file(path, "ELMo weight file")
    shapes = expected_shapes(options)
    name = None
    try:
        try:
            handle = h5py.File(path, "r")
        except OSError as error:
            raise ElmoFileError(f"{path}: not a readable HDF5 file ({error})") from error
        with handle:
            for name, shape in shapes.items():
                _check_dataset(path, handle.get(name), name, shape, options, options_name)
            arrays = {}
            for name in shapes:
                arrays[name] = _read_finite(path, handle[name], name)
    except ElmoFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        # h5py and numpy errors of a damaged file (a corrupt type descriptor, an unreadable chunk)
        # name neither the file nor the dataset: say both.
        where = f"dataset '{name}'" if name is not None else "the file's structure"
        raise ElmoFileError(f"{path}: cannot read {where} (truncated or corrupt file: {error})") from error
    return arrays


def _check_dataset(
    path: Path, dataset: object, name: str, shape: tuple[int, ...], options: ElmoOptions, options_name: str
) -> None:
    """``dataset`` exists as a floating-point dataset of ``shape``, or an :class:`ElmoFileError` says why."""
    if not isinstance(dataset, h5py.Dataset):
        raise ElmoFileError(
            f"{path}: dataset '{name}' is missing; {options_name} ({_describe(options)}) expects one of shape {shape}"
        )
    if dataset.shape != shape:
        raise ElmoFileError(
            f"{path}: '{name}' has shape {dataset.shape}; {options_name} ({_describe(options)}) expects {shape}"
        )
    if dataset.dtype.kind != "f":  # 'i'/'u' integers, 'b' bool, 'c' complex, strings, compounds
        raise ElmoFileError(f"{path}: '{name}' has dtype {dataset.dtype}; expected floating point (float32)")


def _read_finite(path: Path, dataset: h5py.Dataset, name: str) -> np.ndarray:
    """``dataset`` as float32, refused if a value is not finite (NaN or an infinity would only
    surface as NaN vectors)."""
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, refused below
        array = np.asarray(dataset[...], dtype=np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)
        first = tuple(int(i) for i in bad[0])
        raise ElmoFileError(
            f"{path}: '{name}' holds {len(bad)} non-finite value(s) (first: {array[first]} at index "
            f"{first}, in float32); expected finite weights"
        )
    return array


def tf_to_state_dict(arrays: dict[str, np.ndarray], options: ElmoOptions) -> dict[str, torch.Tensor]:
    """Convert bilm-tf arrays (as from :func:`read_weights`) to an :class:`ElmoBiLm` state dict."""
    t = torch.from_numpy
    state: dict[str, torch.Tensor] = {}
    # bilm-tf has no padding row: prepend a zero row so that id 0 embeds to zeros.
    char_embed = arrays["char_embed"]
    state["char_encoder.char_embedding.weight"] = t(np.concatenate([np.zeros_like(char_embed[:1]), char_embed]))
    for i in range(len(options.filters)):
        # TF conv kernel (1, width, in_channels, out_channels) -> Conv1d (out_channels, in_channels, width).
        state[f"char_encoder.convolutions.{i}.weight"] = t(arrays[f"CNN/W_cnn_{i}"][0].transpose(2, 1, 0).copy())
        state[f"char_encoder.convolutions.{i}.bias"] = t(arrays[f"CNN/b_cnn_{i}"])
    for k in range(options.n_highway):
        group = f"CNN_high_{k}"
        # TF computes x @ W (in, out); Linear stores (out, in). The gate is AllenNLP's "use x"
        # gate, the negation of bilm-tf's carry gate: sigmoid(-z) = 1 - sigmoid(z).
        weight = np.concatenate([arrays[f"{group}/W_transform"].T, -arrays[f"{group}/W_carry"].T])
        bias = np.concatenate([arrays[f"{group}/b_transform"], -arrays[f"{group}/b_carry"]])
        state[f"char_encoder.highway.layers.{k}.weight"] = t(weight)
        state[f"char_encoder.highway.layers.{k}.bias"] = t(bias)
    state["char_encoder.projection.weight"] = t(arrays["CNN_proj/W_proj"].T.copy())  # (in, out) -> (out, in)
    state["char_encoder.projection.bias"] = t(arrays["CNN_proj/b_proj"])
    proj = options.projection_dim
    for k in range(options.n_layers):
        w_ih, w_hh, biases, w_hr = [], [], [], []
        for direction in (0, 1):
            prefix = _lstm_prefix(direction, k)
            # W_0 (input + hidden, 4 * cell) holds both input and recurrent weights, gates (i, j, f, o).
            kernel = _reorder_gates(arrays[f"{prefix}/W_0"].T, _TF_TO_TORCH_GATES)  # (4 * cell, input + hidden)
            w_ih.append(kernel[:, :proj])
            w_hh.append(kernel[:, proj:])
            bias = arrays[f"{prefix}/B"].copy()
            # TensorFlow's LSTMCell adds forget_bias=1.0 at run time; we store it in the bias.
            bias.reshape(4, -1)[_TF_FORGET_GATE] += 1.0
            biases.append(_reorder_gates(bias, _TF_TO_TORCH_GATES))
            w_hr.append(arrays[f"{prefix}/W_P_0"].T)  # (cell, proj) -> (proj, cell)
        state[f"lstm.weight_ih_l{k}"] = t(np.stack(w_ih))
        state[f"lstm.weight_hh_l{k}"] = t(np.stack(w_hh))
        state[f"lstm.bias_l{k}"] = t(np.stack(biases))
        state[f"lstm.weight_hr_l{k}"] = t(np.stack(w_hr))
    return state


def state_dict_to_tf(bilm: ElmoBiLm) -> dict[str, np.ndarray]:
    """The inverse of :func:`tf_to_state_dict`: bilm-tf arrays of a model, float32.

    Raises:
        ElmoFileError: the model reads its own lexicons (ELMoForManyLangs): bilm-tf's format
            holds byte-level characters only.
    """
    _check_byte_level(bilm)
    options = bilm.options
    state = {name: value.detach().to("cpu", torch.float32).numpy() for name, value in bilm.state_dict().items()}
    arrays: dict[str, np.ndarray] = {"char_embed": state["char_encoder.char_embedding.weight"][1:]}
    for i in range(len(options.filters)):
        arrays[f"CNN/W_cnn_{i}"] = state[f"char_encoder.convolutions.{i}.weight"].transpose(2, 1, 0)[None]
        arrays[f"CNN/b_cnn_{i}"] = state[f"char_encoder.convolutions.{i}.bias"]
    n_filters = options.n_filters
    for k in range(options.n_highway):
        weight = state[f"char_encoder.highway.layers.{k}.weight"]
        bias = state[f"char_encoder.highway.layers.{k}.bias"]
        arrays[f"CNN_high_{k}/W_transform"] = weight[:n_filters].T
        arrays[f"CNN_high_{k}/W_carry"] = -weight[n_filters:].T
        arrays[f"CNN_high_{k}/b_transform"] = bias[:n_filters]
        arrays[f"CNN_high_{k}/b_carry"] = -bias[n_filters:]
    arrays["CNN_proj/W_proj"] = state["char_encoder.projection.weight"].T
    arrays["CNN_proj/b_proj"] = state["char_encoder.projection.bias"]
    for k in range(options.n_layers):
        for direction in (0, 1):
            prefix = _lstm_prefix(direction, k)
            kernel = np.concatenate(
                [state[f"lstm.weight_ih_l{k}"][direction], state[f"lstm.weight_hh_l{k}"][direction]], axis=1
            )
            arrays[f"{prefix}/W_0"] = _reorder_gates(kernel, _TORCH_TO_TF_GATES).T
            bias = _reorder_gates(state[f"lstm.bias_l{k}"][direction], _TORCH_TO_TF_GATES).copy()
            bias.reshape(4, -1)[_TF_FORGET_GATE] -= 1.0
            arrays[f"{prefix}/B"] = bias
            arrays[f"{prefix}/W_P_0"] = state[f"lstm.weight_hr_l{k}"][direction].T
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in arrays.items()}


def _check_byte_level(bilm: ElmoBiLm) -> None:
    if bilm.lexicons is not None:
        raise ElmoFileError(
            "an ELMoForManyLangs model cannot be written as AllenNLP's weights.hdf5: its characters (and "
            "words) come from its own lexicons, which that format cannot hold"
        )


def _reorder_gates(values: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """Permute the 4 gate blocks along axis 0 of ``(4 * cell, ...)`` ``values``."""
    blocks = np.split(values, 4, axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)


def load_bilm(options_file: str | Path, weight_file: str | Path) -> ElmoBiLm:
    """Build an :class:`ElmoBiLm` from official ``options.json`` and ``weights.hdf5`` files.

    A file listed in a ``SHA256SUMS`` beside it (as ``flair-elmo train`` exports) is verified
    first: a damaged or changed file is refused (:class:`~flair_elmo_modes.checksums.ChecksumError`).
    """
    for path in (Path(options_file), Path(weight_file)):
        if path.is_file():  # a missing file gets its own error from the reader
            checksums.verify(path)
    options = ElmoOptions.from_json(options_file)
    arrays = read_weights(weight_file, options, options_name=str(options_file))
    bilm = ElmoBiLm(options)
    bilm.load_state_dict(tf_to_state_dict(arrays, options))
    return bilm


def write_weights(path: str | Path, bilm: ElmoBiLm) -> None:
    """Write ``bilm``'s weights as an official ``weights.hdf5``, atomically."""
    with atomic_file(Path(path)) as guard, hdf5_file(guard) as handle, hdf5_errors(guard):
        # written through the guard: a full disk is one WriteError naming the file, not an HDF5 crash
        for name, value in state_dict_to_tf(bilm).items():
            handle.create_dataset(name, data=value)


def write_options(path: str | Path, options: ElmoOptions) -> None:
    """Write ``options`` as an official ``options.json``, atomically."""
    atomic_write_json(path, options.to_dict())


def save_bilm(directory: str | Path, bilm: ElmoBiLm) -> tuple[Path, Path]:
    """Write ``options.json`` and ``weights.hdf5`` into ``directory`` (created if needed)."""
    _check_byte_level(bilm)  # before anything is written
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    options_file, weight_file = directory / "options.json", directory / "weights.hdf5"
    write_options(options_file, bilm.options)
    write_weights(weight_file, bilm)
    return options_file, weight_file
