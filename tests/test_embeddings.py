"""``ELMoEmbeddings`` against ``ElmoEmbedder`` layers, the golden files, and Flair's embedding contract."""

import json
from pathlib import Path

import flair
import numpy as np
import pytest
import torch
from flair.data import Corpus, Sentence
from flair.datasets import FlairDatapointDataset
from flair.embeddings import OneHotEmbeddings, StackedEmbeddings
from flair.embeddings.base import load_embeddings

from flair_elmo_modes import ElmoEmbedder
from flair_elmo_modes.bilm.fast.fast_paths import fast_paths
from flair_elmo_modes.embeddings import ELMoEmbeddings
from flair_elmo_modes.layers import parse_mode, select_layers
from tests.helpers import BF16_MAY_WARN, FLOAT32_EPS, assert_as_accurate, assert_within, write_random_model

TEXT = "He went to the prison cell with his cell phone to extract blood cell samples from inmates"
MODES = ["all", "top", "average", "bottom", 1, -2, [2, 0], "0,1", "mix"]


def vectors(sentence: Sentence, name: str | None = None) -> torch.Tensor:
    return torch.stack([token.get_embedding([name] if name else None) for token in sentence]).detach().cpu()


def embed(embeddings: ELMoEmbeddings, *texts: str | list[str]) -> list[Sentence]:
    sentences = [Sentence(text) for text in texts]
    embeddings.embed(sentences)
    return sentences


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_every_mode_is_the_function_of_the_embedder_layers(tiny_model_files, mode) -> None:
    embeddings = ELMoEmbeddings(options_file=tiny_model_files[0], weight_file=tiny_model_files[1], embedding_type=mode)
    layers = torch.from_numpy(ElmoEmbedder(*tiny_model_files).embed_sentence(TEXT.split()))
    parsed = parse_mode(mode, 3)
    expected = layers.mean(dim=0) if parsed.kind == "mix" else select_layers(layers, parsed)
    (sentence,) = embed(embeddings, TEXT)
    assert embeddings.embedding_length == expected.shape[-1] == parsed.embedding_length(16)
    if parsed.kind != "mix":
        # the same biLM run (one sentence, same kernels) and the same selection: bitwise
        torch.testing.assert_close(vectors(sentence), expected, rtol=0, atol=0)
        return
    # A new mix is fl(1/3) * each layer, summed: fl(1/3), the products and two sums put it within
    # 4/3 half-ulps of S = |h0| + |h1| + |h2| of (h0 + h1 + h2) / 3, and the mean as well (two sums and
    # a division): apart by less than 2 * FLOAT32_EPS * S (test_layers.py checks the same in isolation)
    assert_within(vectors(sentence), expected, 2 * FLOAT32_EPS * layers.abs().sum(dim=0))


@pytest.mark.parametrize("mode", ["all", "top", "average"])
def test_modes_on_the_allennlp_golden_arrays(mode: str) -> None:
    golden = Path(__file__).parent / "fixtures" / "golden" / "base"
    sentences = json.loads((golden / "sentences.json").read_text(encoding="utf-8"))
    embeddings = ELMoEmbeddings(golden, embedding_type=mode)
    flair_sentences = [Sentence(tokens) for tokens in sentences[:4]]  # plain, emoji, CJK, RTL
    embeddings.embed(flair_sentences)

    def reference(layers: np.ndarray) -> torch.Tensor:
        layers = torch.from_numpy(layers)
        return {"all": torch.cat(list(layers), -1), "top": layers[-1], "average": layers.mean(0)}[mode]

    got, theirs_f32, theirs_f64 = [], [], []
    with np.load(golden / "expected.npz") as expected:
        for i, sentence in enumerate(flair_sentences):
            assert [t.text for t in sentence] == sentences[i]
            got.append(vectors(sentence))
            theirs_f32.append(reference(expected[f"f32_{i}"]))
            theirs_f64.append(reference(expected[f"f64_{i}"]))
            assert got[i].shape == theirs_f32[i].shape
    # as accurate as AllenNLP's own float32 run, both measured against its float64 run
    assert_as_accurate(got, theirs_f32, theirs_f64)


def test_flair_embedding_type_stays_word_level(tiny_model_files) -> None:
    embeddings = ELMoEmbeddings(tiny_model_files[0].parent, embedding_type="top")
    assert embeddings.embedding_type == "word-level"
    assert embeddings.layer_mode.spec == "top"


def test_embedding_mode_is_an_alias(tiny_model_files) -> None:
    directory = tiny_model_files[0].parent
    assert ELMoEmbeddings(directory, embedding_mode="average").layer_mode.kind == "average"
    with pytest.raises(ValueError, match="not both"):
        ELMoEmbeddings(directory, embedding_type="top", embedding_mode="average")


@pytest.mark.parametrize("mode", ["middle", 3, [0, 9]])
def test_invalid_mode(tiny_model_files, mode) -> None:
    with pytest.raises(ValueError, match="this model has 3 layers"):
        ELMoEmbeddings(tiny_model_files[0].parent, embedding_type=mode)


def test_names_are_unique_per_model_and_mode(tiny_model_files) -> None:
    directory = tiny_model_files[0].parent
    distinct_modes = ["all", "top", "average", "bottom", 1, [2, 0], "0,1", "mix"]
    names = {ELMoEmbeddings(directory, embedding_type=mode).name for mode in distinct_modes}
    assert len(names) == len(distinct_modes)
    assert ELMoEmbeddings(directory, embedding_type="top").name == f"elmo-{directory.name}-top"


def test_stacked_with_one_hot_and_two_modes(tiny_model_files) -> None:
    directory = tiny_model_files[0].parent
    top = ELMoEmbeddings(directory, embedding_type="top")
    everything = ELMoEmbeddings(directory, embedding_type="all")
    corpus = Corpus(
        train=FlairDatapointDataset([Sentence(TEXT)]), dev=FlairDatapointDataset([]), test=FlairDatapointDataset([])
    )
    one_hot = OneHotEmbeddings.from_corpus(corpus, min_freq=1, embedding_length=5)
    stack = StackedEmbeddings([one_hot, top, everything])
    assert stack.embedding_length == 5 + 16 + 48
    (sentence,) = [Sentence(TEXT)]
    stack.embed(sentence)
    for token in sentence:
        full = token.get_embedding()
        assert full.shape == (69,)
        # the stack concatenates the stored vectors: bitwise
        torch.testing.assert_close(full[5:21], token.get_embedding([top.name]), rtol=0, atol=0)
        torch.testing.assert_close(full[21:], token.get_embedding([everything.name]), rtol=0, atol=0)
    separately = embed(ELMoEmbeddings(directory, embedding_type="all"), TEXT)[0]
    # the same sentence alone in both, the same biLM run: bitwise
    torch.testing.assert_close(vectors(sentence, everything.name), vectors(separately), rtol=0, atol=0)


def test_to_params_has_no_paths_and_reloads_without_files(tmp_path: Path) -> None:
    options_file, weight_file = write_random_model(tmp_path / "model", seed=5)
    embeddings = ELMoEmbeddings(tmp_path / "model", embedding_type="0,2")
    params = embeddings.to_params()
    assert str(tmp_path) not in json.dumps(params)
    saved = embeddings.save_embeddings()
    expected = vectors(embed(embeddings, TEXT)[0])
    options_file.unlink()
    weight_file.unlink()
    loaded = load_embeddings(saved)
    assert isinstance(loaded, ELMoEmbeddings) and not loaded.training
    assert loaded.name == embeddings.name and loaded.embedding_length == 32
    torch.testing.assert_close(vectors(embed(loaded, TEXT)[0]), expected, rtol=0, atol=0)


@BF16_MAY_WARN
def test_precision_is_saved_and_fine_tuning_stays_float32(tmp_path: Path) -> None:
    write_random_model(tmp_path / "model", seed=5)
    embeddings = ELMoEmbeddings(tmp_path / "model", embedding_type="top", precision="bf16")
    assert embeddings.to_params()["precision"] == "bf16" and "precision='bf16'" in repr(embeddings)
    expected = vectors(embed(embeddings, TEXT)[0])
    loaded = load_embeddings(embeddings.save_embeddings())
    assert isinstance(loaded, ELMoEmbeddings) and loaded.precision == "bf16"
    torch.testing.assert_close(vectors(embed(loaded, TEXT)[0]), expected, rtol=0, atol=0)
    float32 = ELMoEmbeddings(bilm=embeddings.bilm, embedding_type="top")
    assert (vectors(embed(float32, TEXT)[0]) - expected).abs().max() > 0  # bf16 did run
    with pytest.raises(ValueError, match="fine_tune=True trains in float32"):
        ELMoEmbeddings(tmp_path / "model", fine_tune=True, precision="bf16")


def test_frozen_by_default(tiny_model_files) -> None:
    embeddings = ELMoEmbeddings(tiny_model_files[0].parent, embedding_type="top")
    embeddings.train()
    assert not embeddings.bilm.training and embeddings.static_embeddings
    assert not any(p.requires_grad for p in embeddings.parameters())
    (sentence,) = embed(embeddings, TEXT)
    assert all(token.get_embedding().grad_fn is None for token in sentence)
    assert next(embeddings.bilm.parameters()).device == flair.device


def test_fine_tune_changes_the_bilm(tiny_model_files) -> None:
    embeddings = ELMoEmbeddings(tiny_model_files[0].parent, embedding_type="top", fine_tune=True)
    assert not embeddings.static_embeddings
    before = {name: p.detach().clone() for name, p in embeddings.bilm.named_parameters()}
    optimizer = torch.optim.SGD(embeddings.parameters(), lr=0.1)
    (sentence,) = embed(embeddings, TEXT)
    vectors_with_grad = torch.stack([token.get_embedding() for token in sentence])
    vectors_with_grad.pow(2).mean().backward()
    optimizer.step()
    changed = [name for name, p in embeddings.bilm.named_parameters() if not torch.equal(p, before[name])]
    assert "lstm.weight_hh_l1" in changed and "char_encoder.char_embedding.weight" in changed


def test_mix_weights_are_readable(tiny_model_files) -> None:
    directory = tiny_model_files[0].parent
    mix = ELMoEmbeddings(directory, embedding_type="mix", mix_weights=[0.0, 0.0, 2.0])
    weights, gamma = mix.mix_weights()
    # a float32 softmax: exp (within an ulp), a sum and a division, a few roundings of weights[2]
    assert weights[2] == pytest.approx(np.exp(2) / (2 + np.exp(2)), rel=4 * FLOAT32_EPS) and gamma == 1.0
    assert not mix.static_embeddings
    with pytest.raises(ValueError, match="not 'mix'"):
        ELMoEmbeddings(directory, embedding_type="top").mix_weights()
    with pytest.raises(ValueError, match="need embedding_type='mix'"):
        ELMoEmbeddings(directory, embedding_type="top", mix_layer_norm=True)


ODD_TEXTS = [
    ["Zürich", "naïve", "Ångström"],
    ["🙂", "👍🏽", "👨‍👩‍👧", "\u200b", "\ufeff"],
    ["我", "爱", "自然语言处理", "שָׁלוֹם", "مرحبا"],
    ["", " ", "\t", "   "],
    ["a" * 500, "é" * 60, "x"],
]


def test_odd_tokens_get_vectors(tiny_model_files) -> None:
    embeddings = ELMoEmbeddings(tiny_model_files[0].parent, embedding_type="all")
    sentences = [Sentence([flair.data.Token(word) for word in words]) for words in ODD_TEXTS]
    embeddings.embed(sentences)
    for sentence, words in zip(sentences, ODD_TEXTS, strict=True):
        kept = [word for word in words if word]  # Flair itself drops empty token texts
        assert [t.text for t in sentence] == kept
        got = vectors(sentence, embeddings.name)
        assert got.shape == (len(kept), 48) and torch.isfinite(got).all()


def test_empty_sentence_and_long_sentence(tiny_model_files) -> None:
    embeddings = ELMoEmbeddings(tiny_model_files[0].parent, embedding_type="top")
    empty = Sentence("")
    long = Sentence([f"w{i % 97}" for i in range(5000)])
    embeddings.embed([empty, long])
    assert len(empty) == 0
    assert vectors(long).shape == (5000, 16)


def test_same_vectors_whatever_the_batch(tiny_model_files) -> None:
    embeddings = ELMoEmbeddings(tiny_model_files[0].parent, embedding_type="all")
    texts = [TEXT, "I ate an apple for breakfast", "x", " ".join(f"w{i}" for i in range(40))]
    alone = [vectors(embed(embeddings, text)[0]) for text in texts]
    together = [vectors(s) for s in embed(embeddings, *texts[::-1])][::-1]
    # float32 rounding only: both as accurate as the plain path alone, against a float64 evaluation
    exact = ELMoEmbeddings(tiny_model_files[0].parent, embedding_type="all").double()
    with fast_paths(enabled=False):
        plain = [vectors(embed(embeddings, text)[0]) for text in texts]
    expected = [vectors(embed(exact, text)[0]) for text in texts]
    assert_as_accurate(alone, plain, expected)
    assert_as_accurate(together, plain, expected)


def test_stateful_carries_state(tiny_model_files) -> None:
    embeddings = ELMoEmbeddings(tiny_model_files[0].parent, embedding_type="top", stateful=True)
    first = vectors(embed(embeddings, TEXT)[0])
    second = vectors(embed(embeddings, TEXT)[0])
    assert (first - second).abs().max() > 1e-3  # the carried state: O(0.1), float32 rounding ~1e-6
    embeddings.reset_states()
    # zero state again, the same batch and kernels: the first call's computation, bitwise
    torch.testing.assert_close(vectors(embed(embeddings, TEXT)[0]), first, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["all", "mix"])
def test_layer_cache_gives_the_uncached_vectors(tiny_model_files, mode: str) -> None:
    directory = tiny_model_files[0].parent
    texts = [TEXT, "I ate an apple", "x", TEXT]
    plain = [vectors(s) for s in embed(ELMoEmbeddings(directory, embedding_type=mode), *texts)]
    cached = ELMoEmbeddings(directory, embedding_type=mode, layer_cache_size=10)
    first = [vectors(s) for s in embed(cached, *texts)]
    again = [vectors(s) for s in embed(cached, *texts[::-1])][::-1]
    assert len(cached.layer_cache) == 3 and cached.layer_cache.hits == 4  # all of the second call
    # the cache ran the 3 distinct sentences as one batch, the plain embedding all 4: float32
    # rounding only, against a float64 evaluation; then the cached layers again: bitwise
    exact = ELMoEmbeddings(directory, embedding_type=mode).double()
    assert_as_accurate(first, plain, [vectors(s) for s in embed(exact, *texts)])
    for b, c in zip(first, again, strict=True):
        torch.testing.assert_close(c, b, rtol=0, atol=0)


def test_mix_trains_on_cached_layers(tiny_model_files) -> None:
    cached = ELMoEmbeddings(tiny_model_files[0].parent, embedding_type="mix", layer_cache_size=4)
    optimizer = torch.optim.SGD(cached.parameters(), lr=1.0)
    for _ in range(2):
        (sentence,) = embed(cached, TEXT)
        torch.stack([t.get_embedding() for t in sentence]).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    assert cached.layer_cache.hits == 1
    assert cached.mix_weights()[1] != 1.0


def test_layer_cache_is_dropped_when_the_bilm_changes(tiny_model_files) -> None:
    cached = ELMoEmbeddings(tiny_model_files[0].parent, embedding_type="top", layer_cache_size=4)
    before = vectors(embed(cached, TEXT)[0])
    with torch.no_grad():
        cached.bilm.lstm.bias_l1.add_(0.5)  # as an optimiser step or load_state_dict would
    after = vectors(embed(cached, TEXT)[0])
    # the bias change moves the layers by O(0.1); a stale cache would give them unchanged
    assert (after - before).abs().max() > 1e-3 and cached.layer_cache.hits == 0
    cached.double()
    assert vectors(embed(cached, TEXT)[0]).dtype == torch.float64 and cached.layer_cache.hits == 0
    with pytest.raises(ValueError, match="frozen, stateless"):
        ELMoEmbeddings(tiny_model_files[0].parent, fine_tune=True, layer_cache_size=4)
