"""What a model is, as plain data, without reading its weights or downloading anything: its files,
architecture, parameter count and embedding length per layer mode (``flair-elmo info``).

A published model not in the cache is described from the catalogue (:mod:`flair_elmo_modes.catalogue`);
once its options file is cached, from that file. The machine's description is :mod:`flair_elmo_modes.system`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flair_elmo_modes import checksums
from flair_elmo_modes.models import MANYLANGS, OPTIONS, SHIPPED, WEIGHTS_NAME, ModelSpec, cached_location

if TYPE_CHECKING:
    from flair_elmo_modes.bilm.options import ElmoOptions


def _file_info(path: Path | None, url: str | None = None) -> dict[str, Any]:
    exists = path is not None and path.is_file()
    info: dict[str, Any] = {"path": None if path is None else str(path), "exists": exists}
    info["bytes"] = path.stat().st_size if exists and path is not None else None
    if url is not None:
        info["url"] = url
    return info


def _architecture(options: ElmoOptions) -> dict[str, Any]:
    return {
        "source": "options.json",
        "char_embedding_dim": options.char_embedding_dim,
        "filters": [list(pair) for pair in options.filters],
        "n_filters": options.n_filters,
        "n_highway": options.n_highway,
        "activation": options.activation,
        "n_characters": options.n_characters,
        "max_characters_per_token": options.max_characters_per_token,
        "lstm_layers": options.n_layers,
        "cell_dim": options.cell_dim,
        "projection_dim": options.projection_dim,
        "cell_clip": options.cell_clip,
        "proj_clip": options.proj_clip,
        "use_skip_connections": options.use_skip_connections,
    }


def count_parameters(options: ElmoOptions) -> int:
    """Parameters of the biLM built from ``options``, from the architecture alone (no torch import).

    tests/test_model_info.py checks it against ``ElmoBiLm(options).parameters()``.
    """
    emb, nf, cell, proj = options.char_embedding_dim, options.n_filters, options.cell_dim, options.projection_dim
    chars = options.char_embedding_rows * emb
    convolutions = sum(count * (width * emb + 1) for width, count in options.filters)
    highway = options.n_highway * (nf * 2 * nf + 2 * nf)
    projection = nf * proj + proj
    # per layer and direction: input and recurrent weights, bias, output projection
    lstm = options.n_layers * 2 * (4 * cell * proj + 4 * cell * proj + 4 * cell + proj * cell)
    return chars + convolutions + highway + projection + lstm


def _embedding_lengths(lstm_layers: int, projection_dim: int) -> dict[str, int]:
    from flair_elmo_modes.layers import NAMED_MODES, parse_mode

    return {mode: parse_mode(mode, lstm_layers + 1).embedding_length(2 * projection_dim) for mode in NAMED_MODES}


def describe_model(model: str) -> dict[str, Any]:
    """Everything ``info`` shows, as plain data; reads no weights and downloads nothing.

    A published model not in the cache is described from the catalogue
    (:mod:`flair_elmo_modes.catalogue`); once its options file is cached, from that file.
    """
    from flair_elmo_modes.bilm.options import ElmoOptions

    spec = ModelSpec.parse(model, options_alone=True)
    info: dict[str, Any] = {"model": spec.name}
    source = "options.json"
    published = spec.published
    if published is not None:
        options_path = cached_location(published.options_url, spec.name)
        weights_path: Path | None = cached_location(published.weights_url, spec.name)
        info["kind"] = "published"
        info["options_file"] = _file_info(options_path, published.options_url)
        info["weight_file"] = _file_info(weights_path, published.weights_url)
        if options_path.is_file():
            options = ElmoOptions.from_json(options_path)
        elif published.options is not None:
            options, source = published.options, "catalogue"
        else:
            info["architecture"] = None
            info["parameters"] = None
            return info
    else:
        if spec.kind == OPTIONS:
            assert spec.options_file is not None
            info["kind"] = "options file"
            options_path = Path(spec.options_file)
            sibling = options_path.parent / WEIGHTS_NAME
            weights_path = sibling if sibling.is_file() else None
        else:
            files = spec.resolve(download=False)
            info["model"] = files.name
            info["kind"] = "shipped" if spec.kind == SHIPPED else "local"
            if files.format == MANYLANGS:
                return _describe_manylangs(info, files.directory)
            options_path, weights_path = files.options_file, files.weight_file
        info["options_file"] = _file_info(options_path)
        info["weight_file"] = _file_info(weights_path)
        info["checksums"] = checksums.status(path for path in (options_path, weights_path) if path is not None)
        options = ElmoOptions.from_json(options_path)
    info["architecture"] = _architecture(options) | {"source": source}
    info["output_layers"] = options.num_output_layers
    info["layer_dim"] = options.output_dim
    info["embedding_length"] = _embedding_lengths(options.n_layers, options.projection_dim)
    info["parameters"] = count_parameters(options)
    return info


def _describe_manylangs(info: dict[str, Any], directory: Path) -> dict[str, Any]:
    """:func:`describe_model` of an ELMoForManyLangs directory: its configuration, lexicons and weights."""
    from math import prod

    from flair_elmo_modes.bilm.manylangs import ENCODER_NAME, TOKEN_EMBEDDER_NAME, expected_shapes, read_manylangs

    options, lexicons = read_manylangs(directory)
    info["kind"] = "local ELMoForManyLangs"
    info["options_file"] = _file_info(directory / "config.json")
    info["weight_file"] = _file_info(directory / ENCODER_NAME)
    info["token_embedder_file"] = _file_info(directory / TOKEN_EMBEDDER_NAME)
    info["architecture"] = _architecture(options) | {
        "source": "ELMoForManyLangs config",
        "char_lexicon": len(lexicons.chars),
        "word_lexicon": None if lexicons.words is None else len(lexicons.words),
        "word_dim": lexicons.word_dim,
    }
    info["output_layers"] = options.num_output_layers
    info["layer_dim"] = options.output_dim
    info["embedding_length"] = _embedding_lengths(options.n_layers, options.projection_dim)
    token_shapes, encoder_shapes = expected_shapes(options, lexicons)
    info["parameters"] = sum(prod(shape) for shape in (token_shapes | encoder_shapes).values())
    return info
