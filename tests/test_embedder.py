import numpy as np
import pytest
import torch

from flair_elmo_modes import ElmoEmbedder
from flair_elmo_modes.bilm import batch_to_ids, onednn
from flair_elmo_modes.bilm.fast_paths import fast_paths
from flair_elmo_modes.embedder import length_batches
from tests.helpers import ALIGNED_OPTIONS, assert_as_accurate, random_bilm

SENTENCES = [
    ["I", "ate", "an", "apple", "for", "breakfast"],
    ["He", "went", "to", "the", "prison", "cell", "with", "his", "cell", "phone", "."],
    ["x"],
    ["", "   ", "\t", "🙂", "ناصر", "a" * 120],
    [f"w{i}" for i in range(70)],
]


@pytest.fixture
def embedder(tiny_model_files) -> ElmoEmbedder:
    return ElmoEmbedder(*tiny_model_files)


def test_shapes_and_dtype(embedder: ElmoEmbedder) -> None:
    layers = embedder.embed_sentence(SENTENCES[0])
    assert layers.shape == (3, 6, 16) and layers.dtype == np.float32
    assert [a.shape for a in embedder.embed_batch(SENTENCES)] == [(3, len(s), 16) for s in SENTENCES]


def test_layers_are_the_bilm_layers(embedder: ElmoEmbedder) -> None:
    with torch.no_grad():
        expected = embedder.bilm(batch_to_ids([SENTENCES[1]])).layers[:, 0].numpy()
    np.testing.assert_array_equal(embedder.embed_sentence(SENTENCES[1]), expected)


def test_empty_sentences(embedder: ElmoEmbedder) -> None:
    assert embedder.embed_sentence([]).shape == (3, 0, 16)
    assert embedder.embed_batch([]) == []
    arrays = embedder.embed_batch([["a", "b"], [], ["c"]])
    assert [a.shape for a in arrays] == [(3, 2, 16), (3, 0, 16), (3, 1, 16)]
    np.testing.assert_allclose(arrays[2], embedder.embed_sentence(["c"]), atol=1e-6)


@pytest.mark.parametrize("batch_invariant", [True, False])
@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_vectors_do_not_depend_on_the_batch(batch_size: int, batch_invariant: bool) -> None:
    embedder = ElmoEmbedder(bilm=random_bilm(ALIGNED_OPTIONS))
    with fast_paths(batch_invariant=batch_invariant):
        alone = [embedder.embed_sentence(s) for s in SENTENCES]
        batched = list(embedder.embed_sentences(SENTENCES, batch_size=batch_size))
        reversed_order = embedder.embed_batch(SENTENCES[::-1])[::-1]
    # Batch-invariant, with oneDNN (x86 CPUs) every float32 row is computed alike: bitwise equal.
    # Otherwise kernels are chosen per workload and BLAS kernels block differently for different
    # batch sizes (rounding only; float64 is exact). This random model amplifies rounding.
    if batch_invariant and onednn.usable(torch.zeros(1)):
        for a, b, c in zip(alone, batched, reversed_order, strict=True):
            np.testing.assert_array_equal(b, a)
            np.testing.assert_array_equal(c, a)
        return
    exact = ElmoEmbedder(bilm=random_bilm(ALIGNED_OPTIONS).double()).embed_batch(SENTENCES)
    for a, b, c, e in zip(alone, batched, reversed_order, exact, strict=True):
        assert_as_accurate(torch.from_numpy(b), torch.from_numpy(a), torch.from_numpy(e).double())
        assert_as_accurate(torch.from_numpy(c), torch.from_numpy(a), torch.from_numpy(e).double())


def test_vectors_do_not_depend_on_the_batch_in_float64() -> None:
    embedder = ElmoEmbedder(bilm=random_bilm().double())
    together, _ = embedder.batch_to_embeddings(SENTENCES)
    assert together.dtype == torch.float64
    for i, sentence in enumerate(SENTENCES):
        alone, _ = embedder.batch_to_embeddings([sentence])
        torch.testing.assert_close(together[i, :, : len(sentence)], alone[0], rtol=0, atol=1e-12)


def test_embed_sentences_is_lazy(embedder: ElmoEmbedder) -> None:
    def stream():
        yield SENTENCES[0]
        raise RuntimeError("read too far")

    assert next(embedder.embed_sentences(stream(), batch_size=1)).shape == (3, 6, 16)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(embedder.embed_sentences(SENTENCES, batch_size=0))


def test_length_batches() -> None:
    assert length_batches([3, 1, 2, 1, 5], 2) == [[1, 3], [2, 0], [4]]  # stable among equal lengths
    assert length_batches([3, 1, 2], 2, by_length=False) == [[0, 1], [2]]
    assert length_batches([], 4) == []


@pytest.mark.parametrize("batch_invariant", [True, False])
def test_length_aware_batching_gives_the_same_vectors_in_input_order(batch_invariant: bool) -> None:
    embedder = ElmoEmbedder(bilm=random_bilm(ALIGNED_OPTIONS))
    stream = [*SENTENCES, [], *SENTENCES[::-1], ["y"]]
    with fast_paths(batch_invariant=batch_invariant):
        plain = list(embedder.embed_sentences(stream, batch_size=2))
        by_length = list(embedder.embed_sentences(iter(stream), batch_size=2, sort_batches=3))
    assert [a.shape for a in by_length] == [(3, len(s), 64) for s in stream]
    if batch_invariant and onednn.usable(torch.zeros(1)):
        for a, b in zip(by_length, plain, strict=True):
            np.testing.assert_array_equal(a, b)
        return
    exact = ElmoEmbedder(bilm=random_bilm(ALIGNED_OPTIONS).double()).embed_batch(stream)
    for a, b, e in zip(by_length, plain, exact, strict=True):
        if a.size == 0:
            continue
        assert_as_accurate(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(e).double())


def test_length_aware_batching_reads_one_window_ahead_and_needs_stateless(tiny_model_files) -> None:
    read: list[int] = []

    def stream():
        for i, sentence in enumerate(SENTENCES * 3):
            read.append(i)
            yield sentence

    arrays = ElmoEmbedder(*tiny_model_files).embed_sentences(stream(), batch_size=2, sort_batches=3)
    assert next(arrays).shape == (3, len(SENTENCES[0]), 16)
    assert len(read) == 6
    with pytest.raises(ValueError, match="needs stateful=False"):
        next(ElmoEmbedder(*tiny_model_files, stateful=True).embed_sentences(SENTENCES, sort_batches=2))
    with pytest.raises(ValueError, match="sort_batches must be >= 1"):
        next(ElmoEmbedder(*tiny_model_files).embed_sentences(SENTENCES, sort_batches=0))


def test_stateful_carries_state_per_row_and_resets(tiny_model_files) -> None:
    stateful = ElmoEmbedder(*tiny_model_files, stateful=True)
    stateless = ElmoEmbedder(*tiny_model_files)
    first = stateful.embed_batch(SENTENCES[:2])
    # TINY_OPTIONS' widths are not multiples of the vector width: other batches, other rounding
    np.testing.assert_allclose(first[0], stateless.embed_sentence(SENTENCES[0]), atol=1e-5)
    second = stateful.embed_batch(SENTENCES[:2])
    assert np.abs(second[0][1:] - first[0][1:]).max() > 1e-3  # layer 0 has no state
    np.testing.assert_array_equal(second[0][0], first[0][0])
    # a later, larger batch: rows 0-1 continue, row 2 starts from zeros
    third = stateful.embed_batch(SENTENCES[:3])
    np.testing.assert_allclose(third[2], stateless.embed_sentence(SENTENCES[2]), atol=1e-5)
    stateful.reset_states()
    np.testing.assert_allclose(stateful.embed_batch(SENTENCES[:2])[0], first[0], atol=1e-6)


def test_stateful_matches_carrying_the_state_by_hand(tiny_model_files) -> None:
    stateful = ElmoEmbedder(*tiny_model_files, stateful=True)
    bilm = stateful.bilm
    with torch.no_grad():
        first = bilm(batch_to_ids(SENTENCES[:3]))
        second = bilm(batch_to_ids(SENTENCES[:2]), type(first.state)(*(s[:, :, :2] for s in first.state)))
    stateful.embed_batch(SENTENCES[:3])
    got = stateful.embed_batch(SENTENCES[:2])
    np.testing.assert_allclose(got[1], second.layers[:, 1, : len(SENTENCES[1])].numpy(), atol=1e-6)
    # the smaller batch kept row 2's state from the first call
    third = stateful.embed_batch(SENTENCES[:3])
    with torch.no_grad():
        expected = bilm(batch_to_ids(SENTENCES[:3]), _merge(first.state, second.state)).layers
    np.testing.assert_allclose(third[2], expected[:, 2, :1].numpy(), atol=1e-6)


def _merge(old, new):
    return type(old)(*(torch.cat([n, o[:, :, 2:]], dim=2) for o, n in zip(old, new, strict=True)))


def test_double_precision_and_requires_grad_toggles() -> None:
    bilm = random_bilm()
    embedder = ElmoEmbedder(bilm=bilm.double())
    assert embedder.embed_sentence(["a", "b"]).dtype == np.float32
    assert not any(p.requires_grad for p in embedder.bilm.parameters())


def test_missing_files_are_reported(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="options"):
        ElmoEmbedder(tmp_path / "options.json", tmp_path / "weights.hdf5")
    with pytest.raises(ValueError, match="needs options_file and weight_file"):
        ElmoEmbedder()
