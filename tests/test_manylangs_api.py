"""``flair_elmo_modes.manylangs.Embedder`` against ``elmoformanylangs`` 0.0.4.post2's own ``sents2elmo``.

Golden files: ``tests/fixtures/manylangs_api/`` (``make_manylangs_api.py`` in the oracle venv),
their outputs for one batch from a fresh ``Embedder`` of ``tests/fixtures/efml/char_word``, in
float32 and, after their ``model.double()``, float64.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flair_elmo_modes.manylangs import Embedder
from tests.helpers import assert_as_accurate
from tests.test_lazy_imports import heavy_modules

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "manylangs_api"
MODEL = FIXTURES / "efml" / "char_word"
#: their ``output_layer`` -> the key of its golden arrays (make_manylangs_api.OUTPUT_LAYERS)
OUTPUT_LAYERS = {-1: "average", -2: "all", 0: "layer0", 2: "layer2"}


@pytest.fixture(scope="module")
def golden() -> tuple[dict[str, list[list[str]]], dict[str, np.ndarray]]:
    sentences = json.loads((GOLDEN / "sentences.json").read_text(encoding="utf-8"))
    with np.load(GOLDEN / "golden.npz") as arrays:
        return sentences, dict(arrays)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(MODEL, cuda_device=-1)  # the CPU: the float32 rounding the tolerances are derived for


def theirs(arrays: dict[str, np.ndarray], prefix: str, count: int) -> list[np.ndarray]:
    return [arrays[f"{prefix}_{i:02d}"] for i in range(count)]


@pytest.mark.parametrize("output_layer", list(OUTPUT_LAYERS))
def test_sents2elmo_equals_their_first_batch(output_layer: int, golden, embedder: Embedder) -> None:
    sentences, arrays = golden
    key, count = OUTPUT_LAYERS[output_layer], len(sentences["sentences"])
    got = embedder.sents2elmo(sentences["sentences"], output_layer=output_layer)
    f32, f64 = theirs(arrays, f"f32_{key}", count), theirs(arrays, f"f64_{key}", count)
    assert isinstance(got, list) and len(got) == count
    assert [(x.shape, x.dtype) for x in got] == [(x.shape, x.dtype) for x in f32]  # float32, their shapes
    # as accurate as their float32 run, both against their float64 run of the same weights
    assert_as_accurate(got, f32, f64)


@pytest.mark.parametrize("output_layer", [-2, 0, 2])
def test_an_empty_sentence_beside_others_gives_no_rows_as_theirs(output_layer: int, golden, embedder) -> None:
    sentences, arrays = golden
    key, with_empty = OUTPUT_LAYERS[output_layer], sentences["with_empty"]
    got = embedder.sents2elmo(with_empty, output_layer=output_layer)
    expected = theirs(arrays, f"empty_f32_{key}", len(with_empty))
    assert [(x.shape, x.dtype) for x in got] == [(x.shape, x.dtype) for x in expected]
    # the other sentences are those of the plain golden run: their float64 run is the reference
    plain = [i for i, sentence in enumerate(with_empty) if sentence]
    f64 = theirs(arrays, f"f64_{key}", len(plain))
    assert_as_accurate([got[i] for i in plain], [expected[i] for i in plain], f64)


def test_average_of_an_empty_sentence_is_empty_where_theirs_divides_by_zero(embedder: Embedder) -> None:
    dim = embedder.embedder.dim
    got = embedder.sents2elmo([["好"], []], output_layer=-1)
    assert got[1].shape == (0, dim) and got[1].dtype == np.float32
    assert [x.shape for x in embedder.sents2elmo([[], []], output_layer=-1)] == [(0, dim), (0, dim)]
    assert [x.shape for x in embedder.sents2elmo([[]], output_layer=-2)] == [(3, 0, dim)]
    assert embedder.sents2elmo([]) == []


def test_stateless_vectors_do_not_depend_on_earlier_calls_or_batches(golden, embedder: Embedder) -> None:
    """Theirs move by up to 0.55 on a second call or in batches of 2 (manifest.json); ours stay
    their first batch's, to float32 rounding."""
    sentences, arrays = golden
    count = len(sentences["sentences"])
    f32, f64 = theirs(arrays, "f32_all", count), theirs(arrays, "f64_all", count)
    embedder.sents2elmo(sentences["sentences"][::-1], output_layer=-2)
    again = embedder.sents2elmo(sentences["sentences"], output_layer=-2)
    in_twos = Embedder(MODEL, batch_size=2, cuda_device=-1).sents2elmo(sentences["sentences"], output_layer=-2)
    assert_as_accurate(again, f32, f64)
    assert_as_accurate(in_twos, f32, f64)


def test_output_layer_meanings(embedder: Embedder) -> None:
    sentence = [["Москва", "—", "столица", "."]]
    layers = embedder.sents2elmo(sentence, output_layer=-2)[0]
    np.testing.assert_array_equal(embedder.sents2elmo(sentence, output_layer=-1)[0], layers.mean(axis=0))
    for index in (0, 1, 2, -3):  # numpy indexing, as their data[output_layer]
        np.testing.assert_array_equal(embedder.sents2elmo(sentence, output_layer=index)[0], layers[index])


@pytest.mark.parametrize("output_layer", [3, -4, True, 1.0, "top"])
def test_an_output_layer_that_names_no_layer_is_refused(output_layer: object, embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="output_layer"):
        embedder.sents2elmo([["a"]], output_layer=output_layer)  # type: ignore[arg-type]


def test_sentences_must_be_token_lists(embedder: Embedder) -> None:
    with pytest.raises(TypeError, match="sentence 0"):
        embedder.sents2elmo(["Ça va"])  # type: ignore[list-item]


def test_attributes_and_arguments() -> None:
    embedder = Embedder(str(MODEL), batch_size=8, cuda_device=-1)
    assert (embedder.model_dir, embedder.batch_size, embedder.use_cuda) == (str(MODEL), 8, False)
    with pytest.raises(ValueError, match="batch_size"):
        Embedder(MODEL, batch_size=0)


def test_any_model_works(tiny_model_files) -> None:
    """An AllenNLP model directory too: layers (L + 1, T, 2 * projection_dim)."""
    embedder = Embedder(tiny_model_files[0].parent, cuda_device=-1)
    options = embedder.embedder.bilm.options
    assert embedder.sents2elmo([["a", "b"]], output_layer=-2)[0].shape == (options.n_layers + 1, 2, options.output_dim)


def test_importing_the_module_leaves_flair_out() -> None:
    assert "flair" not in heavy_modules("from flair_elmo_modes.manylangs import Embedder")
