"""ELMoForManyLangs model directories (HIT-SCIR, 44 languages): read into an :class:`ElmoBiLm`.

A directory as their ``elmoformanylangs`` package (0.0.4) reads it:

- ``config.json``: the training arguments; ``config_path`` names the model configuration, looked
  up as given (relative to the directory), then by its file name in the directory, then among
  the configurations their package ships (``cnn_50_100_512_4096_sample.json`` and
  ``cnn_0_100_512_4096_sample.json``, identical; copied in :data:`RELEASED_CONFIGS`);
- ``char.dic`` (and ``word.dic`` when ``token_embedder.word_dim > 0``): ``token<TAB>id`` lexicons
  (see :mod:`~flair_elmo_modes.bilm.lexicons`);
- ``token_embedder.pkl`` and ``encoder.pkl``: PyTorch state dicts of their ``ConvTokenEmbedder``
  and ``ElmobiLm``, loaded as tensors only (``torch.load(weights_only=True)``): a file that
  needs any other class is refused, never unpickled.

Their token embedder is ours with their own character ids, an optional word embedding put before
the highway output, and a projection of both; their encoder is AllenNLP's ``ElmoLstm`` (with skip
connections): the same computation as AllenNLP's ELMo from there on. Their ``"lstm"`` encoder and
token embedder (a plain ``nn.LSTM``) appear in no released configuration and are refused.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from flair_elmo_modes.bilm.errors import ElmoFileError, not_a_file, weights_only_refusal
from flair_elmo_modes.bilm.lexicons import ID_OFFSET, Lexicons, read_lexicon
from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.bilm.options import ElmoOptions, FieldReader

CONFIG_NAME = "config.json"
CHAR_LEXICON_NAME = "char.dic"
WORD_LEXICON_NAME = "word.dic"
TOKEN_EMBEDDER_NAME = "token_embedder.pkl"
ENCODER_NAME = "encoder.pkl"

_RELEASED = {
    "encoder": {"name": "elmo", "projection_dim": 512, "cell_clip": 3, "proj_clip": 3, "dim": 4096, "n_layers": 2},
    "token_embedder": {
        "name": "cnn",
        "activation": "relu",
        "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]],
        "n_highway": 2,
        "word_dim": 100,
        "char_dim": 50,
        "max_characters_per_token": 50,
    },
    "classifier": {"name": "sampled_softmax", "n_samples": 8192},
    "dropout": 0.1,
}
#: The configurations ``elmoformanylangs`` ships in its ``configs/`` (the released models name them).
RELEASED_CONFIGS: dict[str, dict[str, Any]] = {
    "cnn_50_100_512_4096_sample.json": _RELEASED,
    "cnn_0_100_512_4096_sample.json": _RELEASED,
}


#: Where each field of :class:`ElmoOptions` is in their model configuration.
CONFIG_FIELDS = {
    "char_embedding_dim": "token_embedder.char_dim",
    "filters": "token_embedder.filters",
    "n_highway": "token_embedder.n_highway",
    "activation": "token_embedder.activation",
    "max_characters_per_token": "token_embedder.max_characters_per_token",
    "cell_dim": "encoder.dim",
    "projection_dim": "encoder.projection_dim",
    "n_layers": "encoder.n_layers",
    "cell_clip": "encoder.cell_clip",
    "proj_clip": "encoder.proj_clip",
}


def read_model_config(directory: str | Path) -> tuple[dict[str, Any], str]:
    """The model configuration ``config.json`` points to, and where it was found.

    Raises:
        ElmoFileError: ``config.json`` is missing, not JSON or has no ``config_path``; or the
            configuration is in none of the places looked in (all of them named).
    """
    directory = Path(directory)
    arguments = _read_json(directory / CONFIG_NAME)
    config_path = arguments.get("config_path") if isinstance(arguments, Mapping) else None
    if not isinstance(config_path, str) or not config_path:
        raise ElmoFileError(f"{directory / CONFIG_NAME}: missing field 'config_path' (the model configuration's file)")
    file_name = Path(config_path).name
    candidates = [directory / config_path, directory / file_name]
    for candidate in candidates:
        if candidate.is_file():
            return _read_json(candidate), str(candidate)
    if file_name in RELEASED_CONFIGS:
        return RELEASED_CONFIGS[file_name], f"elmoformanylangs/configs/{file_name}"
    looked = ", ".join(str(path) for path in dict.fromkeys(candidates))
    raise ElmoFileError(
        f"{directory / CONFIG_NAME}: config_path {config_path!r} not found: looked in {looked} and among the "
        f"released configurations ({', '.join(RELEASED_CONFIGS)})"
    )


def options_from_config(config: Mapping[str, Any], source: str) -> tuple[ElmoOptions, int]:
    """Our :class:`ElmoOptions` and the word embedding size of a model configuration.

    ``n_characters`` is the size of ``char.dic`` (which the configuration does not hold):
    :func:`read_manylangs` fills it in.

    Raises:
        ElmoFileError: a field is missing or wrong (named, with its value and what was expected),
            or the configuration uses a part this package does not implement.
    """
    reader = FieldReader(config, source)
    encoder = reader.get("encoder.name", str)
    if encoder.lower() != "elmo":
        raise ElmoFileError(
            f"{source}: 'encoder.name' is {encoder!r}; only 'elmo' (AllenNLP's ElmoLstm, every released model's) "
            "is supported"
        )
    embedder = reader.get("token_embedder.name", str)
    if embedder.lower() != "cnn":
        raise ElmoFileError(
            f"{source}: 'token_embedder.name' is {embedder!r}; only 'cnn' (every released model's) is supported"
        )
    if reader.non_negative_int("token_embedder.char_dim") == 0:
        raise ElmoFileError(f"{source}: 'token_embedder.char_dim' is 0: word-only models are not supported")
    # Their ElmobiLm adds each layer's input to its output from layer 1 on: skip connections.
    fixed = {"n_characters": ID_OFFSET, "use_skip_connections": True}
    options = ElmoOptions.from_dict(config, source, byte_ids=False, names=CONFIG_FIELDS, fixed=fixed)
    return options, reader.non_negative_int("token_embedder.word_dim")


def read_manylangs(directory: str | Path) -> tuple[ElmoOptions, Lexicons]:
    """The architecture and lexicons of a model directory, without reading its weights."""
    directory = Path(directory)
    config, source = read_model_config(directory)
    options, word_dim = options_from_config(config, source)
    chars = read_lexicon(directory / CHAR_LEXICON_NAME)
    options = dataclasses.replace(options, n_characters=len(chars) + ID_OFFSET)
    words = read_lexicon(directory / WORD_LEXICON_NAME) if word_dim > 0 else None
    return options, Lexicons(chars, words, word_dim, source=str(directory))


def load_manylangs(directory: str | Path) -> ElmoBiLm:
    """Build an :class:`ElmoBiLm` from an ELMoForManyLangs model directory.

    Raises:
        ElmoFileError: a missing or unreadable file, a pickle that is not plain tensors, or
            weights whose shapes contradict the configuration and lexicons (naming the tensor
            and both shapes).
    """
    directory = Path(directory)
    options, lexicons = read_manylangs(directory)
    token_embedder = _load_tensors(directory / TOKEN_EMBEDDER_NAME)
    encoder = _load_tensors(directory / ENCODER_NAME)
    bilm = ElmoBiLm(options, lexicons)
    bilm.load_state_dict(to_state_dict(token_embedder, encoder, options, lexicons, str(directory)))
    return bilm


def expected_shapes(
    options: ElmoOptions, lexicons: Lexicons
) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """Every tensor of ``token_embedder.pkl`` and of ``encoder.pkl``, with its shape."""
    n_filters, proj, cell = options.n_filters, options.projection_dim, options.cell_dim
    token: dict[str, tuple[int, ...]] = {
        "char_emb_layer.embedding.weight": (len(lexicons.chars), options.char_embedding_dim)
    }
    if lexicons.words is not None:
        token["word_emb_layer.embedding.weight"] = (len(lexicons.words), lexicons.word_dim)
    for i, (width, count) in enumerate(options.filters):
        token[f"convolutions.{i}.weight"] = (count, options.char_embedding_dim, width)
        token[f"convolutions.{i}.bias"] = (count,)
    for k in range(options.n_highway):
        token[f"highways._layers.{k}.weight"] = (2 * n_filters, n_filters)
        token[f"highways._layers.{k}.bias"] = (2 * n_filters,)
    token["projection.weight"] = (proj, lexicons.word_dim + n_filters)
    token["projection.bias"] = (proj,)
    encoder: dict[str, tuple[int, ...]] = {}
    for k in range(options.n_layers):
        for direction in ("forward", "backward"):
            prefix = f"{direction}_layer_{k}"
            encoder[f"{prefix}.input_linearity.weight"] = (4 * cell, proj)
            encoder[f"{prefix}.state_linearity.weight"] = (4 * cell, proj)
            encoder[f"{prefix}.state_linearity.bias"] = (4 * cell,)
            encoder[f"{prefix}.state_projection.weight"] = (proj, cell)
    return token, encoder


def to_state_dict(
    token_embedder: Mapping[str, torch.Tensor],
    encoder: Mapping[str, torch.Tensor],
    options: ElmoOptions,
    lexicons: Lexicons,
    source: str,
) -> dict[str, torch.Tensor]:
    """Their two state dicts as one :class:`ElmoBiLm` state dict, every shape checked first."""
    token_shapes, encoder_shapes = expected_shapes(options, lexicons)
    _check_shapes(token_embedder, token_shapes, f"{source}/{TOKEN_EMBEDDER_NAME}")
    _check_shapes(encoder, encoder_shapes, f"{source}/{ENCODER_NAME}")

    def shifted(weight: torch.Tensor) -> torch.Tensor:
        # Our ids are theirs + 1 (0 pads the batch): a zero row 0 keeps every id's vector.
        return torch.cat([weight.new_zeros(1, weight.shape[1]), weight])

    state = {"char_encoder.char_embedding.weight": shifted(token_embedder["char_emb_layer.embedding.weight"])}
    if lexicons.words is not None:
        state["char_encoder.word_embedding.weight"] = shifted(token_embedder["word_emb_layer.embedding.weight"])
    for i in range(len(options.filters)):
        for kind in ("weight", "bias"):  # Conv1d (out, in, width) in both
            state[f"char_encoder.convolutions.{i}.{kind}"] = token_embedder[f"convolutions.{i}.{kind}"]
    for k in range(options.n_highway):
        for kind in ("weight", "bias"):  # AllenNLP's Highway: [transform; gate], as ours
            state[f"char_encoder.highway.layers.{k}.{kind}"] = token_embedder[f"highways._layers.{k}.{kind}"]
    state["char_encoder.projection.weight"] = token_embedder["projection.weight"]  # input [word; chars], as ours
    state["char_encoder.projection.bias"] = token_embedder["projection.bias"]
    # AllenNLP's LstmCellWithProjection: gates (input, forget, memory, output) as ours; the bias
    # (of state_linearity) is the whole gate bias, forget-gate 1.0 included.
    for k in range(options.n_layers):

        def both(name: str, layer: int = k) -> torch.Tensor:
            return torch.stack([encoder[f"{d}_layer_{layer}.{name}"] for d in ("forward", "backward")])

        state[f"lstm.weight_ih_l{k}"] = both("input_linearity.weight")
        state[f"lstm.weight_hh_l{k}"] = both("state_linearity.weight")
        state[f"lstm.bias_l{k}"] = both("state_linearity.bias")
        state[f"lstm.weight_hr_l{k}"] = both("state_projection.weight")
    return {name: value.float() for name, value in state.items()}


def _check_shapes(tensors: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], source: str) -> None:
    missing = [name for name in expected if name not in tensors]
    if missing:
        raise ElmoFileError(f"{source}: missing tensor(s) {', '.join(missing)}")
    unexpected = [name for name in tensors if name not in expected]
    if unexpected:
        raise ElmoFileError(
            f"{source}: unexpected tensor(s) {', '.join(unexpected)} (is the configuration the model's own?)"
        )
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ElmoFileError(
                f"{source}: tensor {name!r} has shape {tuple(tensors[name].shape)}, but the configuration and "
                f"lexicons give {shape}"
            )


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors only: ``weights_only=True`` refuses every other class."""
    if not path.is_file():
        raise ElmoFileError(str(not_a_file(path, "ELMoForManyLangs weights")))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ElmoFileError(
            f"{path}: refused: not a plain state dict of tensors, loading it would run code from the file "
            f"(torch.load weights_only=True: {weights_only_refusal(error)})"
        ) from None
    except (OSError, RuntimeError, EOFError) as error:
        raise ElmoFileError(f"{path}: not a PyTorch weights file ({error})") from None
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise ElmoFileError(f"{path}: expected a state dict (names -> tensors), got {type(loaded).__name__}")
    return dict(loaded)


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError:
        raise ElmoFileError(str(not_a_file(path, "ELMoForManyLangs configuration"))) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ElmoFileError(f"{path}: not valid JSON ({error})") from None
