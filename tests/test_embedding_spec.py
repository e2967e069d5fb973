"""``EmbeddingSpec`` and ``build_embedder``: the one way the CLI and corpus actors build an embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flair_elmo_modes.embedder import ElmoEmbedder
from flair_elmo_modes.embedding_spec import (
    DEFAULT_SORT_BATCHES,
    EmbeddingSpec,
    build_embedder,
    model_from_flags,
    read_vocabulary,
)
from flair_elmo_modes.errors import UsageError
from flair_elmo_modes.models import ModelSpec


@pytest.fixture
def tiny(tiny_model_files: tuple[Path, Path]) -> ModelSpec:
    return ModelSpec.parse(tiny_model_files[0].parent)


def test_build_embedder_is_an_elmo_embedder_of_the_model(tiny: ModelSpec, tiny_model_files, tmp_path: Path) -> None:
    vocabulary = tmp_path / "vocab.txt"
    vocabulary.write_text("a 10\nb\n\n", encoding="utf-8")
    embedder, mode = build_embedder(EmbeddingSpec(tiny, layers=(0, -1), vocab_path=vocabulary))
    assert mode.indices == (0, 2) and embedder.stateful is False and embedder.precision == "fp32"
    assert len(embedder.bilm.char_encoder.token_cache) == 2  # the vocabulary's tokens, computed once
    # The same biLM, cache, kernels and batch: the same bits as an embedder built by hand.
    by_hand = ElmoEmbedder(*tiny_model_files)
    by_hand.cache_tokens(["a", "b"])
    sentence = ["a", "b", "c"]
    np.testing.assert_array_equal(embedder.embed_sentence(sentence), by_hand.embed_sentence(sentence))


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(mode="top", layers=(0,)), "not both"),
        (dict(mode="bottom"), "layer mode 'bottom'"),
        (dict(layers=()), "at least one layer index"),
        (dict(batch_size=0), "batch_size: expected a positive integer, got 0"),
        (dict(sort_batches=True), "sort_batches: expected a positive integer, got True"),
        (dict(precision="int8"), "precision 'int8': expected one of fp32, bf16, fp16"),
        (dict(stateful=True, sort_batches=2), "--stateful needs --sort-batches 1"),
    ],
)
def test_bad_settings_are_refused_when_made(tiny: ModelSpec, settings: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        EmbeddingSpec(tiny, **settings)


def test_the_batch_window_defaults_by_state(tiny: ModelSpec) -> None:
    assert EmbeddingSpec(tiny).batch_window == DEFAULT_SORT_BATCHES
    assert EmbeddingSpec(tiny, stateful=True).batch_window == 1  # stateful batches cannot be sorted
    assert EmbeddingSpec(tiny, sort_batches=4).batch_window == 4


def test_layers_out_of_the_models_range_name_its_layers(tiny: ModelSpec) -> None:
    files, mode, vocabulary = EmbeddingSpec(tiny, layers=(0, 2)).check()
    assert vocabulary is None
    assert mode.indices == (0, 2) and files.directory == tiny.path
    with pytest.raises(UsageError, match=r"--layers 0,3: layer 3 is out of range; this model has 3 layers"):
        EmbeddingSpec(tiny, layers=(0, 3)).check()


def test_cuda_is_checked_before_anything_loads(tiny: ModelSpec) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(UsageError, match="--cuda-device 0: CUDA is not available"):
        build_embedder(EmbeddingSpec(tiny, cuda_device=0))


def test_model_flags(tiny_model_files) -> None:
    options_file, weight_file = tiny_model_files
    assert model_from_flags(None, None, None, None, "small") == ModelSpec.parse("small")
    assert model_from_flags(None, options_file, weight_file, None, "small").kind == "files"
    with pytest.raises(UsageError, match="--options-file needs --weight-file too"):
        model_from_flags(None, options_file, None, None, "small")
    with pytest.raises(UsageError, match="--weight-file needs --options-file too"):
        model_from_flags(None, None, weight_file, None, "small")
    with pytest.raises(UsageError, match="not both"):
        model_from_flags("small", options_file, weight_file, None, "small")


def test_vocabulary_files(tmp_path: Path) -> None:
    path = tmp_path / "v.txt"
    path.write_bytes("\ufeffthe 5\n\n  of\n".encode())
    assert read_vocabulary(path) == ["the", "of"]  # first field, blank lines and the BOM dropped
    path.write_bytes(b"\xff\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        read_vocabulary(path)
    with pytest.raises(UsageError, match="not found"):
        read_vocabulary(tmp_path / "missing.txt")
