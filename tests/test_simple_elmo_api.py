"""``flair_elmo_modes.simple_elmo.ElmoModel`` against ``simple_elmo`` 0.9.2's own ``get_elmo_vectors``.

Golden files: ``tests/fixtures/simple_elmo/`` (``make_simple_elmo.py`` in the TensorFlow venv): a
small random model in NLPL's layout, as a directory and as a ``.zip``, and their float64 arrays
for each ``layers`` value, every batch from zero LSTM state. TensorFlow computes in float32; the
reference here is our float64 evaluation of the same weights, and the tolerances are derived
from our plain float32 path's error against it (``tests/helpers.py``).
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from flair_elmo_modes.bilm.fast.fast_paths import fast_paths
from flair_elmo_modes.bilm.hdf5 import load_bilm
from flair_elmo_modes.embedder import ElmoEmbedder
from flair_elmo_modes.simple_elmo import LAYERS, ElmoModel
from tests.helpers import assert_as_accurate, float32_error, rounding_tolerance
from tests.test_lazy_imports import heavy_modules

GOLDEN = Path(__file__).parent / "fixtures" / "simple_elmo"
MODEL_DIR = GOLDEN / "model"
MODEL_ZIP = GOLDEN / "model.zip"
SOURCES = {"dir": MODEL_DIR, "zip": MODEL_ZIP}


@pytest.fixture(scope="module")
def zip_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Flair's cache root (where archives are unpacked) in a temporary directory, for this module."""
    root = tmp_path_factory.mktemp("flair_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLAIR_CACHE_ROOT", str(root))
        if "flair" in sys.modules:
            patch.setattr(sys.modules["flair"], "cache_root", root)
        yield root


@pytest.fixture(scope="module")
def golden() -> tuple[dict[str, list[list[str]]], dict[str, np.ndarray]]:
    sentences = json.loads((GOLDEN / "sentences.json").read_text(encoding="utf-8"))
    with np.load(GOLDEN / "golden.npz") as arrays:
        return sentences, dict(arrays)


@pytest.fixture(scope="module")
def models(zip_cache: Path) -> dict[str, ElmoModel]:
    loaded = {}
    for name, source in SOURCES.items():
        model = ElmoModel()
        assert model.load(source, max_batch_size=64, cuda_device=-1) == "The model is now loaded."
        loaded[name] = model
    return loaded


@pytest.fixture(scope="module")
def reference() -> ElmoEmbedder:
    """Our float64 evaluation of the golden model: the "exact" values."""
    return ElmoEmbedder(bilm=load_bilm(MODEL_DIR / "options.json", MODEL_DIR / "model.hdf5").double())


def exact_and_plain(reference: ElmoEmbedder, sentences: list[list[str]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each sentence's ``(n_layers, n_tokens, dim)`` layers in float64 and by the plain float32 path."""
    exact = reference.runner.run(sentences)
    exact_layers = [exact.layers[:, i, : len(s)].numpy() for i, s in enumerate(sentences)]
    plain = ElmoEmbedder(bilm=copy.deepcopy(reference.bilm).float())
    with fast_paths(enabled=False):
        plain_layers = [plain.embed_sentence(s) for s in sentences]
    return exact_layers, plain_layers


def select(layers: np.ndarray, mode: str) -> np.ndarray:
    """simple_elmo's ``layers`` choice of one sentence's ``(n_layers, n_tokens, dim)`` layers."""
    return {"all": layers, "top": layers[-1], "average": layers.mean(axis=0)}[mode]


def tokens_of(vectors: np.ndarray, sentences: list[list[str]], mode: str) -> list[np.ndarray]:
    """Each sentence's rows of a zero-padded ``get_elmo_vectors`` array, without the padding."""
    return [vectors[i, :, : len(s)] if mode == "all" else vectors[i, : len(s)] for i, s in enumerate(sentences)]


def assert_matches_theirs(got: list[np.ndarray], theirs: list[np.ndarray], exact: list[np.ndarray], plain) -> None:
    """Theirs within float32 rounding of the float64 reference, and ours as accurate as theirs."""
    assert float32_error(theirs, exact) <= rounding_tolerance(plain, exact)
    assert_as_accurate(got, theirs, exact)


@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("source", list(SOURCES))
def test_get_elmo_vectors_equal_theirs_from_zero_state(source: str, layers: str, golden, models, reference) -> None:
    sentences, arrays = golden
    texts = sentences["sentences"]
    got = models[source].get_elmo_vectors(texts, layers=layers)
    theirs = arrays[f"{source}_{layers}"]
    assert got.shape == theirs.shape and got.dtype == theirs.dtype == np.float64
    exact, plain = exact_and_plain(reference, texts)
    assert_matches_theirs(
        tokens_of(got, texts, layers),
        tokens_of(theirs, texts, layers),
        [select(x, layers) for x in exact],
        [select(x, layers) for x in plain],
    )


@pytest.mark.parametrize("layers", LAYERS)
def test_several_batches_equal_theirs_with_the_state_reset_per_batch(layers: str, golden, reference) -> None:
    """Their golden run: max_batch_size 3, warm-up on, the LSTM state zeroed before every batch."""
    sentences, arrays = golden
    texts = sentences["sentences"]
    model = ElmoModel()
    model.load(MODEL_DIR, max_batch_size=3, cuda_device=-1)
    got = model.get_elmo_vectors(texts, warmup=True, layers=layers)
    theirs = arrays[f"batched_{layers}"]
    assert got.shape == theirs.shape
    exact, plain = exact_and_plain(reference, texts)
    assert_matches_theirs(
        tokens_of(got, texts, layers),
        tokens_of(theirs, texts, layers),
        [select(x, layers) for x in exact],
        [select(x, layers) for x in plain],
    )


def test_zeros_past_each_end_where_theirs_hold_the_padding_vector(golden, models) -> None:
    sentences, arrays = golden
    texts = sentences["sentences"]
    lengths = np.array([len(s) for s in texts])
    beyond = np.arange(lengths.max())[None, :] >= lengths[:, None]  # (n, max_len)
    assert np.abs(arrays["dir_all"][:, 0][beyond]).max() > 0  # theirs: layer 0 of the padding
    assert np.abs(arrays["dir_average"][beyond]).max() > 0
    for layers in LAYERS:
        got = models["dir"].get_elmo_vectors(texts, layers=layers)
        padded = got.transpose(0, 2, 1, 3)[beyond] if layers == "all" else got[beyond]
        assert not padded.any(), layers


def sentence_averages(per_sentence: list[np.ndarray], layers: str) -> list[np.ndarray]:
    """The float64 formula: each sentence's mean over its tokens (per layer for "all"), divided by its norm."""
    means = [select(x, layers).mean(axis=-2) for x in per_sentence]
    return [mean / np.linalg.norm(mean) for mean in means]


@pytest.mark.parametrize(
    ("layers", "texts_key"), [("average", "equal_length"), ("top", "equal_length"), ("all", "one_token")]
)
def test_get_elmo_vector_average_equals_theirs(layers: str, texts_key: str, golden, models, reference) -> None:
    """Where theirs count no padding (sentences of one length) and keep the layers apart (one token)."""
    sentences, arrays = golden
    texts = sentences[texts_key]
    got = models["dir"].get_elmo_vector_average(texts, layers=layers)
    theirs = arrays[f"sentence_average_{layers}"]
    assert got.shape == theirs.shape and got.dtype == np.float64
    exact, plain = exact_and_plain(reference, texts)
    assert_matches_theirs(list(got), list(theirs), sentence_averages(exact, layers), sentence_averages(plain, layers))


@pytest.mark.parametrize("layers", LAYERS)
def test_sentence_averages_count_only_the_sentences_tokens(layers: str, models, reference) -> None:
    """Sentences of different lengths in one batch, and alone: the same averages of their own tokens."""
    model = models["dir"]
    texts = [["a", "b", "c", "d", "e"], ["Hello"], []]
    exact, plain = exact_and_plain(reference, texts[:2])
    averages = model.get_elmo_vector_average(texts, layers=layers)
    assert_as_accurate(list(averages[:2]), sentence_averages(plain, layers), sentence_averages(exact, layers))
    alone = model.get_elmo_vector_average([texts[1]], layers=layers)
    assert_as_accurate(list(alone), sentence_averages(plain, layers)[1:], sentence_averages(exact, layers)[1:])
    assert not averages[2].any()  # no tokens: zeros


def test_warmup_and_earlier_calls_change_nothing(golden, models) -> None:
    sentences, _ = golden
    texts = sentences["sentences"]
    model = models["dir"]
    first = model.get_elmo_vectors(texts, warmup=False, layers="all")
    model.get_elmo_vectors(texts[::-1], layers="all")
    np.testing.assert_array_equal(model.get_elmo_vectors(texts, warmup=True, layers="all", session=object()), first)


def test_attributes_after_load(models) -> None:
    model = models["zip"]
    assert (model.batch_size, model.max_chars, model.vector_size, model.n_layers) == (64, 50, 16, 3)
    empty = ElmoModel()
    assert (empty.batch_size, empty.vector_size, empty.n_layers) == (None, None, None)
    with pytest.raises(ValueError, match="no model loaded"):
        empty.get_elmo_vectors([["a"]])


def test_shapes_of_edge_cases(models) -> None:
    model = models["dir"]
    assert model.get_elmo_vectors([], layers="all").shape == (0, 3, 0, 16)
    assert model.get_elmo_vectors([[], []]).shape == (2, 0, 16)
    assert model.get_elmo_vector_average([]).shape == (0, 16)


def test_bad_arguments_are_refused(models, tmp_path: Path) -> None:
    model = models["dir"]
    with pytest.raises(ValueError, match="layers must be one of"):
        model.get_elmo_vectors([["a"]], layers="bottom")
    with pytest.raises(TypeError, match="sentence 0"):
        model.get_elmo_vectors(["a sentence"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="full=True"):
        ElmoModel().load(MODEL_DIR, full=True)
    with pytest.raises(ValueError, match="max_batch_size"):
        ElmoModel().load(MODEL_DIR, max_batch_size=0)
    with pytest.raises(FileNotFoundError, match="not an ELMo model directory"):
        ElmoModel().load(tmp_path)


def test_importing_the_module_leaves_flair_out() -> None:
    assert "flair" not in heavy_modules("from flair_elmo_modes.simple_elmo import ElmoModel")
