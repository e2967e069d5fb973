import copy
import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from flair_elmo_modes import ElmoEmbedder, models
from flair_elmo_modes.atomic import WriteError
from flair_elmo_modes.bilm import ElmoOptions, batch_to_ids, load_bilm
from flair_elmo_modes.bilm.fast import onednn
from flair_elmo_modes.bilm.fast.fast_paths import fast_paths
from flair_elmo_modes.bilm.precision import computing_in
from flair_elmo_modes.cli import main
from flair_elmo_modes.embedder import length_batches
from flair_elmo_modes.hdf5_output import EmbedInputError
from tests.helpers import (
    ALIGNED_OPTIONS,
    BF16_MAY_WARN,
    CONTRACTING_SCALE,
    TINY_OPTIONS,
    assert_as_accurate,
    cache_as_published,
    float64_tolerance,
    full_disk,
    random_bilm,
)

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


@BF16_MAY_WARN
def test_bf16_layers_are_the_bilm_layers_in_bf16(tiny_model_files) -> None:
    embedder = ElmoEmbedder(*tiny_model_files, precision="bf16")
    with torch.no_grad(), computing_in("bf16"):
        expected = embedder.bilm(batch_to_ids([SENTENCES[1]])).layers[:, 0].numpy()
    layers = embedder.embed_sentence(SENTENCES[1])
    assert layers.dtype == np.float32 and embedder.precision == "bf16"
    np.testing.assert_array_equal(layers, expected)
    float32 = ElmoEmbedder(bilm=embedder.bilm).embed_sentence(SENTENCES[1])
    assert np.abs(layers - float32).max() > 0  # bf16 did run (tests/bilm/test_precision.py: how well)


def test_fp16_on_a_cpu_and_unknown_precisions_are_refused(tiny_model_files) -> None:
    with pytest.raises(ValueError, match="CUDA"):
        ElmoEmbedder(*tiny_model_files, precision="fp16")
    with pytest.raises(ValueError, match="'float32'"):
        ElmoEmbedder(*tiny_model_files, precision="float32")


def test_empty_sentences(tiny_model_files) -> None:
    embedder = ElmoEmbedder(*tiny_model_files)
    assert embedder.embed_sentence([]).shape == (3, 0, 16)
    assert embedder.embed_batch([]) == []
    arrays = embedder.embed_batch([["a", "b"], [], ["c"]])
    assert [a.shape for a in arrays] == [(3, 2, 16), (3, 0, 16), (3, 1, 16)]
    # ["c"] in a batch of three and alone: two float32 evaluations, compared through float64.
    exact = ElmoEmbedder(bilm=load_bilm(*tiny_model_files).double()).embed_sentence(["c"])
    assert_as_accurate(arrays[2], embedder.embed_sentence(["c"]), exact)


def contracting_bilm(options: ElmoOptions = ALIGNED_OPTIONS):
    return random_bilm(options, scale=CONTRACTING_SCALE)


@pytest.mark.parametrize("batch_invariant", [True, False])
@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_vectors_do_not_depend_on_the_batch(batch_size: int, batch_invariant: bool) -> None:
    embedder = ElmoEmbedder(bilm=contracting_bilm())
    with fast_paths(batch_invariant=batch_invariant):
        alone = [embedder.embed_sentence(s) for s in SENTENCES]
        batched = list(embedder.embed_sentences(SENTENCES, batch_size=batch_size))
        reversed_order = embedder.embed_batch(SENTENCES[::-1])[::-1]
    # Batch-invariant, with oneDNN (x86 CPUs) every float32 row is computed alike: bitwise equal.
    # Otherwise kernels are chosen per workload and BLAS kernels block differently for different
    # batch sizes: float32 rounding only, checked against a float64 evaluation.
    if batch_invariant and onednn.usable(torch.zeros(1)):
        for a, b, c in zip(alone, batched, reversed_order, strict=True):
            np.testing.assert_array_equal(b, a)
            np.testing.assert_array_equal(c, a)
        return
    exact = ElmoEmbedder(bilm=contracting_bilm().double()).embed_batch(SENTENCES)
    with fast_paths(enabled=False):
        plain = [embedder.embed_sentence(s) for s in SENTENCES]
    for candidate in (alone, batched, reversed_order):
        assert_as_accurate(candidate, plain, exact)


def test_vectors_do_not_depend_on_the_batch_in_float64() -> None:
    # contracting: at random_bilm's default scale the 70-word sentence keeps barely half of float32's
    # digits, and the float32 error that float64_tolerance scales would not measure rounding any more
    bilm = random_bilm(scale=CONTRACTING_SCALE)
    embedder = ElmoEmbedder(bilm=copy.deepcopy(bilm).double())
    float32 = ElmoEmbedder(bilm=bilm)
    together, _ = embedder.batch_to_embeddings(SENTENCES)
    assert together.dtype == torch.float64
    for i, sentence in enumerate(SENTENCES):
        alone, _ = embedder.batch_to_embeddings([sentence])
        # other batches, other kernel blocking: float64 rounding (float64_tolerance)
        atol = float64_tolerance(float32.batch_to_embeddings([sentence])[0], alone)
        torch.testing.assert_close(together[i, :, : len(sentence)], alone[0], rtol=0, atol=atol)


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
    embedder = ElmoEmbedder(bilm=contracting_bilm())
    stream = [*SENTENCES, [], *SENTENCES[::-1], ["y"]]
    with fast_paths(batch_invariant=batch_invariant):
        plain = list(embedder.embed_sentences(stream, batch_size=2))
        by_length = list(embedder.embed_sentences(iter(stream), batch_size=2, sort_batches=3))
    assert [a.shape for a in by_length] == [(3, len(s), 64) for s in stream]
    if batch_invariant and onednn.usable(torch.zeros(1)):
        for a, b in zip(by_length, plain, strict=True):
            np.testing.assert_array_equal(a, b)
        return
    # float32 rounding only (other batches), checked against a float64 evaluation
    exact = ElmoEmbedder(bilm=contracting_bilm().double()).embed_batch(stream)
    assert_as_accurate(by_length, plain, exact)


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
    exact = ElmoEmbedder(bilm=load_bilm(*tiny_model_files).double())
    first = stateful.embed_batch(SENTENCES[:2])
    second = stateful.embed_batch(SENTENCES[:2])
    # layer 0 has no state; the others change by O(0.1): 1e-3 is far above float32 rounding (~1e-6 here)
    assert np.abs(second[0][1:] - first[0][1:]).max() > 1e-3
    np.testing.assert_array_equal(second[0][0], first[0][0])
    # a later, larger batch: rows 0-1 continue, row 2 starts from zeros
    third = stateful.embed_batch(SENTENCES[:3])
    # Rows that start from zeros are the sentences alone, but TINY_OPTIONS' widths are not multiples
    # of the vector width: other batches, other rounding. Checked against a float64 evaluation,
    # pooled over both rows (the maximum over the 48 numbers of ["x"] alone says little).
    alone = [stateless.embed_sentence(SENTENCES[i]) for i in (0, 2)]
    assert_as_accurate([first[0], third[2]], alone, [exact.embed_sentence(SENTENCES[i]) for i in (0, 2)])
    stateful.reset_states()
    # after the reset: the first call again (same batch, zero state, same kernels): bitwise
    np.testing.assert_array_equal(stateful.embed_batch(SENTENCES[:2])[0], first[0])


def test_stateful_matches_carrying_the_state_by_hand(tiny_model_files) -> None:
    stateful = ElmoEmbedder(*tiny_model_files, stateful=True)
    bilm = stateful.bilm
    with torch.no_grad():
        first = bilm(batch_to_ids(SENTENCES[:3]))
        second = bilm(batch_to_ids(SENTENCES[:2]), type(first.state)(*(s[:, :, :2] for s in first.state)))
    stateful.embed_batch(SENTENCES[:3])
    got = stateful.embed_batch(SENTENCES[:2])
    # the same batches, states and kernels as by hand: bitwise the same computation
    np.testing.assert_array_equal(got[1], second.layers[:, 1, : len(SENTENCES[1])].numpy())
    # the smaller batch kept row 2's state from the first call
    third = stateful.embed_batch(SENTENCES[:3])
    with torch.no_grad():
        expected = bilm(batch_to_ids(SENTENCES[:3]), _merge(first.state, second.state)).layers
    np.testing.assert_array_equal(third[2], expected[:, 2, :1].numpy())


def _merge(old, new):
    return type(old)(*(torch.cat([n, o[:, :, 2:]], dim=2) for o, n in zip(old, new, strict=True)))


def test_double_precision_and_requires_grad_toggles() -> None:
    bilm = random_bilm()
    embedder = ElmoEmbedder(bilm=bilm.double())
    assert embedder.embed_sentence(["a", "b"]).dtype == np.float32
    assert not any(p.requires_grad for p in embedder.bilm.parameters())


def test_missing_files_are_reported(tmp_path, tiny_model_files) -> None:
    with pytest.raises(FileNotFoundError, match="options"):
        ElmoEmbedder(tmp_path / "options.json", tmp_path / "weights.hdf5")
    with pytest.raises(ValueError, match=r"weight_file .* needs options_file too"):
        ElmoEmbedder(weight_file=tiny_model_files[1])
    with pytest.raises(ValueError, match=r"options_file .* needs weight_file too"):
        ElmoEmbedder(tiny_model_files[0])


# --------------------------------------------------------------------------------------------
# allennlp 0.9's constructor: no arguments, URLs, model names


def test_no_arguments_means_allennlps_default_model(tmp_path: Path, tiny_model_files, monkeypatch) -> None:
    monkeypatch.setattr(models, "flair_cache_root", lambda: tmp_path)
    cache_as_published(tmp_path, models.DEFAULT_MODEL, tiny_model_files)  # as if downloaded before
    default = ElmoEmbedder()
    np.testing.assert_array_equal(
        default.embed_sentence(["a", "b"]), ElmoEmbedder(*tiny_model_files).embed_sentence(["a", "b"])
    )
    options_url, weights_url = models.PUBLISHED_MODELS[models.DEFAULT_MODEL].urls
    assert options_url.endswith("/elmo_2x4096_512_2048cnn_2xhighway_options.json")  # allennlp's DEFAULT_OPTIONS_FILE
    assert weights_url.endswith("/elmo_2x4096_512_2048cnn_2xhighway_weights.hdf5")


def test_urls_and_model_names_are_downloaded_like_elmo_embeddings(
    tmp_path: Path, tiny_model_files, monkeypatch
) -> None:
    import flair
    import flair.file_utils

    served = {"options.json": tiny_model_files[0], "weights.hdf5": tiny_model_files[1]}
    calls: list[str] = []

    def cached_path(url: str, cache_dir: Path) -> Path:  # a download from a server holding the tiny model
        calls.append(url)
        target = Path(cache_dir) / url.rsplit("/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        source = served["options.json" if url.endswith(".json") else "weights.hdf5"]
        target.write_bytes(source.read_bytes())
        return target

    monkeypatch.setattr(flair, "cache_root", tmp_path)
    monkeypatch.setattr(flair.file_utils, "cached_path", cached_path)
    expected = ElmoEmbedder(*tiny_model_files).embed_sentence(["a", "b"])
    by_url = ElmoEmbedder("https://example.org/elmo/options.json", "https://example.org/elmo/weights.hdf5")
    np.testing.assert_array_equal(by_url.embed_sentence(["a", "b"]), expected)
    assert calls == ["https://example.org/elmo/weights.hdf5", "https://example.org/elmo/options.json"]
    by_name = ElmoEmbedder("small")
    np.testing.assert_array_equal(by_name.embed_sentence(["a", "b"]), expected)
    assert calls[2:] == list(models.PUBLISHED_MODELS["small"].urls)
    assert ElmoEmbedder(tiny_model_files[0].parent).dim == 16  # a directory, as ELMoEmbeddings takes


# --------------------------------------------------------------------------------------------
# tokens


@pytest.mark.parametrize("bad", [None, 5, b"x"], ids=["None", "int", "bytes"])
def test_tokens_must_be_str(embedder: ElmoEmbedder, bad: object) -> None:
    with pytest.raises(TypeError, match=f"tokens must be str, got {type(bad).__name__}"):
        embedder.embed_sentence(["a", bad])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=f"sentence 1, token 0: tokens must be str, got {type(bad).__name__}"):
        embedder.embed_batch([["a"], [bad]])  # type: ignore[list-item]


def test_numpy_arrays_work_like_lists(embedder: ElmoEmbedder) -> None:
    sentence = ["I", "ate", "an", "apple"]
    np.testing.assert_array_equal(embedder.embed_sentence(np.array(sentence)), embedder.embed_sentence(sentence))
    batch = [["a", "b", "c"], ["d", "e", "f"]]
    for got, want in zip(embedder.embed_batch(np.array(batch)), embedder.embed_batch(batch), strict=True):
        np.testing.assert_array_equal(got, want)
    ragged = np.array([np.array(["a", "b"]), np.array(["c"])], dtype=object)
    assert [a.shape[1] for a in embedder.embed_batch(ragged)] == [2, 1]


# --------------------------------------------------------------------------------------------
# embed_file: allennlp 0.9's signature, the CLI's file

FILE_LINES = ["I ate an apple", "  He went to the prison cell .", "x", "I ate an apple", "a b c d e f"]


def hdf5_contents(path: Path) -> dict[str, object]:
    with h5py.File(path, "r") as handle:
        return {
            key: json.loads(handle[key].asstr()[0]) if key == "sentence_to_index" else handle[key][()] for key in handle
        }


def assert_same_contents(a: dict[str, object], b: dict[str, object]) -> None:
    assert set(a) == set(b)
    for key, value in a.items():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32
            np.testing.assert_array_equal(value, b[key])
        else:
            assert value == b[key]


@BF16_MAY_WARN
@pytest.mark.parametrize(
    ("kwargs", "flags"),
    [
        ({}, []),
        ({"output_format": "top"}, ["--top"]),
        ({"output_format": "average", "batch_size": 2}, ["--average", "--batch-size", "2"]),
        ({"forget_sentences": True}, ["--forget-sentences"]),
        ({"precision": "bf16"}, ["--precision", "bf16"]),  # a constructor argument of ElmoEmbedder
    ],
)
def test_embed_file_writes_what_the_cli_writes(tmp_path: Path, tiny_model_files, kwargs, flags, capsys) -> None:
    kwargs = dict(kwargs)
    precision = kwargs.pop("precision", "fp32")
    source = tmp_path / "in.txt"
    source.write_text("\n".join(FILE_LINES) + "\n", encoding="utf-8")
    code = main(
        [
            "embed",
            str(source),
            str(tmp_path / "cli.hdf5"),
            "--model",
            str(tiny_model_files[0].parent),
            "--quiet",
            *flags,
        ]
    )
    assert code == 0, capsys.readouterr().err
    embedder = ElmoEmbedder(*tiny_model_files, precision=precision)
    with source.open(encoding="utf-8") as handle:  # allennlp passes an open file
        embedder.embed_file(handle, tmp_path / "api.hdf5", **kwargs)
    embedder.embed_file(str(source), str(tmp_path / "path.hdf5"), **kwargs)  # a path works too
    cli = hdf5_contents(tmp_path / "cli.hdf5")
    assert_same_contents(hdf5_contents(tmp_path / "api.hdf5"), cli)
    assert_same_contents(hdf5_contents(tmp_path / "path.hdf5"), cli)
    if not kwargs.get("forget_sentences"):
        assert cli["sentence_to_index"] == {line.strip(): str(i) for i, line in enumerate(FILE_LINES)}


def test_embed_file_with_sentence_keys(tmp_path: Path, embedder: ElmoEmbedder) -> None:
    lines = ["a b", "c d e", "f"]
    embedder.embed_file(io.StringIO("\n".join(lines)), tmp_path / "out.hdf5", use_sentence_keys=True)
    contents = hdf5_contents(tmp_path / "out.hdf5")
    assert set(contents) == set(lines)
    # "c d e" was embedded in a batch of three: float32 rounding only, against a float64 evaluation
    exact = ElmoEmbedder(bilm=copy.deepcopy(embedder.bilm).double()).embed_sentence(["c", "d", "e"])
    assert_as_accurate(contents["c d e"], embedder.embed_sentence(["c", "d", "e"]), exact)


def test_embed_file_refuses_what_allennlp_refuses_and_keeps_the_old_file(
    tmp_path: Path, embedder: ElmoEmbedder
) -> None:
    output = tmp_path / "out.hdf5"
    output.write_bytes(b"precious")
    with pytest.raises(EmbedInputError, match="an empty line at line 2; remove them"):
        embedder.embed_file(io.StringIO("a\n\nb\n"), output)
    with pytest.raises(EmbedInputError, match="use_sentence_keys needs distinct sentences, but line 2 repeats line 1"):
        embedder.embed_file(io.StringIO("a b\na b\n"), output, use_sentence_keys=True)
    with pytest.raises(ValueError, match="output_format must be one of"):
        embedder.embed_file(io.StringIO("a\n"), output, output_format="bottom")
    assert output.read_bytes() == b"precious" and sorted(tmp_path.iterdir()) == [output]


def test_embed_file_on_a_full_disk_keeps_the_old_file(tmp_path: Path, embedder: ElmoEmbedder, monkeypatch) -> None:
    output = tmp_path / "out.hdf5"
    output.write_bytes(b"precious")
    full_disk(monkeypatch, capacity=5_000)
    with pytest.raises(WriteError, match=f"cannot write {output}: No space left on device"):
        embedder.embed_file(io.StringIO("\n".join(f"line {i} of words" for i in range(50))), output)
    assert output.read_bytes() == b"precious" and sorted(tmp_path.iterdir()) == [output]


def test_embed_file_of_an_empty_input_writes_an_empty_index(tmp_path: Path, embedder: ElmoEmbedder) -> None:
    embedder.embed_file(io.StringIO(""), tmp_path / "out.hdf5")  # as allennlp: no lines, no error
    assert hdf5_contents(tmp_path / "out.hdf5") == {"sentence_to_index": {}}


def test_cache_tokens_keeps_the_vectors() -> None:
    # contracting: at the default scale the 70-word sentence nearly loses half of float32's digits
    embedder = ElmoEmbedder(bilm=contracting_bilm(TINY_OPTIONS))
    before = embedder.embed_batch(SENTENCES)
    assert embedder.cache_tokens(["I", "ate", "an", "apple", "I"]) == 4
    after = embedder.embed_batch(SENTENCES)
    assert embedder.bilm.char_encoder.token_cache.hits > 0
    # the cache encoded its tokens in another batch: float32 rounding only, against float64
    exact = ElmoEmbedder(bilm=contracting_bilm(TINY_OPTIONS).double()).embed_batch(SENTENCES)
    assert_as_accurate(after, before, exact)
    assert embedder.cache_tokens(None) == 0 and embedder.bilm.char_encoder.token_cache is None
