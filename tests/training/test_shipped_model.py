"""The model shipped in the package (``en-tiny``), trained by ``scripts/build_shipped_model.py``."""

import json
from itertools import combinations

import numpy as np
import pytest
import torch
from flair.data import Sentence

from flair_elmo_modes import SHIPPED_MODEL, ElmoEmbedder, ELMoEmbeddings, ElmoOptions
from flair_elmo_modes.catalogue import SHIPPED_DIR, shipped_models
from flair_elmo_modes.models import resolve_model
from flair_elmo_modes.training import load_language_model
from flair_elmo_modes.training.data import EncodedCorpus

MODEL_DIR = SHIPPED_DIR / SHIPPED_MODEL
# lm_head.hdf5 and split.json reproduce the README's perplexities: in the repository and the sdist, not the wheel.
needs_repository_files = pytest.mark.skipif(
    not (MODEL_DIR / "lm_head.hdf5").is_file(), reason="lm_head.hdf5 and split.json are not installed from a wheel"
)
CELL_SENTENCE = "He went to the prison cell with his cell phone to extract blood cell samples from inmates".split()


@pytest.fixture(scope="module")
def embedder() -> ElmoEmbedder:
    files = resolve_model(SHIPPED_MODEL)
    return ElmoEmbedder(files.options_file, files.weight_file)


def test_shipped_model_is_in_the_package_and_small() -> None:
    assert SHIPPED_MODEL == "en-tiny" and SHIPPED_MODEL in shipped_models()
    files = resolve_model(SHIPPED_MODEL)
    assert files.options_file == MODEL_DIR / "options.json" and files.weight_file == MODEL_DIR / "weights.hdf5"
    total = sum(path.stat().st_size for path in MODEL_DIR.iterdir() if path.is_file())
    assert total <= 16_000_000


def test_embedder_gives_all_layers_of_the_documented_shape(embedder: ElmoEmbedder) -> None:
    options = embedder.bilm.options
    assert (options.n_layers, options.cell_dim, options.projection_dim, options.n_filters) == (2, 512, 128, 512)
    layers = embedder.embed_sentence(["The", "cat", "sat", "."])
    assert layers.shape == (3, 4, 256) and layers.dtype == np.float32
    assert np.isfinite(layers).all()


def test_vectors_are_contextual_above_layer_0(embedder: ElmoEmbedder) -> None:
    layers = embedder.embed_sentence(CELL_SENTENCE)
    cells = [i for i, token in enumerate(CELL_SENTENCE) if token == "cell"]
    for a, b in combinations(cells, 2):
        np.testing.assert_array_equal(layers[0, a], layers[0, b])  # the character encoding has no context
        for layer in (1, 2):
            # context: the LSTM vectors of the same word differ by O(1); 1e-3 (+ 1e-5 relative) is
            # thousands of float32 roundings of these values (up to ~4): no rounding makes them differ
            assert not np.allclose(layers[layer, a], layers[layer, b], atol=1e-3)


def test_flair_embeddings_load_by_name() -> None:
    embeddings = ELMoEmbeddings(model=SHIPPED_MODEL)
    sentence = Sentence("The grand jury said the election was conducted well .")
    embeddings.embed(sentence)
    for token in sentence:
        assert token.get_embedding().shape == (embeddings.embedding_length,)


@needs_repository_files
def test_language_model_head_prefers_real_english() -> None:
    model, vocab = load_language_model(MODEL_DIR)
    assert model.bilm.options == ElmoOptions.from_json(MODEL_DIR / "options.json")
    ordered = ["The", "man", "said", "that", "he", "would", "go", "home", "."]
    shuffled = [".", "home", "that", "The", "go", "he", "said", "man", "would"]
    corpus = EncodedCorpus.build([ordered, shuffled], vocab)
    with torch.no_grad():
        nll = [model(*corpus.batch([i])) for i in range(2)]
    for direction in ("forward_nll", "backward_nll"):
        real, scrambled = (float(getattr(loss, direction)) for loss in nll)
        assert real < scrambled - 5.0, direction  # at least e^5 times more probable
        assert real / nll[0].count < np.log(len(vocab)) - 2.0  # far better than uniform


@needs_repository_files
def test_split_holds_out_whole_units_and_records_the_brown_files() -> None:
    split = json.loads((MODEL_DIR / "split.json").read_text(encoding="utf-8"))
    pages = [split["python_doc_pages"][name] for name in ("train", "dev", "test")]
    every_page = [page for group in pages for page in group]
    assert len(every_page) == len(set(every_page)) and all(page.endswith(".html") for page in every_page)
    assert split["counts"]["dev"]["sentences"] > 0 and split["counts"]["test"]["sentences"] > 0
    # No Brown text was used in training; the Brown split only names the out-of-domain test files.
    brown = [split["brown_eval_split"][name] for name in ("train", "dev", "test")]
    every_file = [file_id for group in brown for file_id in group]
    assert len(every_file) == len(set(every_file)) == 500
