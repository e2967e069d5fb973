"""ELMoForManyLangs model directories against their own package (``elmoformanylangs`` 0.0.4.post2).

The fixtures in ``tests/fixtures/efml/`` are model directories with random weights written by
their classes, and the outputs of their ``Embedder.sents2elmo`` (made by
``scripts/make_efml_fixtures.py`` in the oracle venv).
"""

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from flair_elmo_modes.bilm.errors import ElmoFileError
from flair_elmo_modes.bilm.fast.fast_paths import fast_paths
from flair_elmo_modes.bilm.hdf5 import save_bilm
from flair_elmo_modes.bilm.lexicons import BOS, EOS, Lexicons, read_lexicon
from flair_elmo_modes.bilm.manylangs import load_manylangs, read_manylangs
from flair_elmo_modes.embedder import ElmoEmbedder
from flair_elmo_modes.models import MANYLANGS, resolve_model
from tests.helpers import assert_as_accurate, float32_error, float64_tolerance, rounding_tolerance

FIXTURES = Path(__file__).parent.parent / "fixtures" / "efml"
CASES = ["char_only", "char_word"]  # the cases their released configurations can be (encoder "elmo", CNN)


def golden(case: str) -> tuple[list[list[str]], dict[str, np.ndarray]]:
    directory = FIXTURES / case
    sentences = json.loads((directory / "golden_sentences.json").read_text(encoding="utf-8"))
    with np.load(directory / "golden.npz") as arrays:
        return sentences, dict(arrays)


def copy_case(case: str, tmp_path: Path) -> Path:
    target = tmp_path / case
    shutil.copytree(FIXTURES / case, target)
    return target


@pytest.mark.parametrize("shortcuts", ["fast paths", "plain"])
@pytest.mark.parametrize("case", CASES)
def test_layers_equal_sents2elmo_all_layers(case: str, shortcuts: str) -> None:
    """Both ways: the char encoder's shortcuts read their own padding id (its embedding is not zero)."""
    sentences, arrays = golden(case)
    embedder = ElmoEmbedder(str(FIXTURES / case))
    with fast_paths(enabled=shortcuts == "fast paths"):
        got = embedder.embed_batch(sentences)
    theirs = [arrays[f"layers_{i:02d}"] for i in range(len(sentences))]  # float32, in one batch
    theirs_alone = [arrays[f"alone_{i:02d}"] for i in range(len(sentences))]  # float32, one at a time
    for i, layers in enumerate(got):
        assert layers.shape == theirs[i].shape == theirs_alone[i].shape  # (L + 1, T, 2 * projection_dim)
    # float32 results of two implementations: ours as accurate as each of theirs, against a float64
    # evaluation: theirs where the fixture has one, else ours, which their float32 results must then
    # match to float32 rounding (rounding_tolerance, from our plain float32 path's error)
    if "f64_layers_00" in arrays:
        exact = [arrays[f"f64_layers_{i:02d}"] for i in range(len(sentences))]
    else:
        exact = ElmoEmbedder(bilm=load_manylangs(FIXTURES / case).double()).embed_batch(sentences)
        with fast_paths(enabled=False):
            plain = [embedder.embed_sentence(sentence) for sentence in sentences]
        assert float32_error(theirs + theirs_alone, exact + exact) <= rounding_tolerance(plain, exact)
    assert_as_accurate(got, theirs, exact)
    assert_as_accurate(got, theirs_alone, exact)
    # each sentence alone (batch of one) gives the same vectors as in the batch up to float32
    # rounding: ours do not depend on it
    assert_as_accurate([embedder.embed_sentence(sentence) for sentence in sentences], got, exact)


def test_float64_matches_their_float64_run() -> None:
    sentences, arrays = golden("char_word")
    bilm = load_manylangs(FIXTURES / "char_word").double()
    output = ElmoEmbedder(bilm=bilm).runner.run(sentences)
    # the same function of the same numbers, summed in other orders: their float32 error on these
    # sentences measures how much the model amplifies rounding; float64_tolerance scales it to float64
    theirs_f32 = [arrays[f"layers_{i:02d}"] for i in range(len(sentences))]
    atol = float64_tolerance(theirs_f32, [arrays[f"f64_layers_{i:02d}"] for i in range(len(sentences))])
    for i, sentence in enumerate(sentences):
        expected = arrays[f"f64_layers_{i:02d}"]
        assert expected.dtype == np.float64
        np.testing.assert_allclose(output.layers[:, i, : len(sentence)].numpy(), expected, rtol=0, atol=atol)


@pytest.mark.parametrize("case", CASES)
def test_token_ids_are_theirs_shifted_by_one(case: str) -> None:
    """Their create_one_batch ids (sentence markers included), words cut to max_characters_per_token."""
    sentences, arrays = golden(case)
    bilm = load_manylangs(FIXTURES / case)
    max_chars = bilm.options.max_characters_per_token
    assert any(len(token) + 2 > max_chars for sentence in sentences for token in sentence)  # long words occur
    for i, sentence in enumerate(sentences):
        ids = bilm.token_ids([[BOS, *sentence, EOS]])[0] - 1
        np.testing.assert_array_equal(ids[:, :max_chars].numpy(), arrays[f"char_ids_{i:02d}"])
        if bilm.lexicons.words is not None:
            np.testing.assert_array_equal(ids[:, max_chars].numpy(), arrays[f"word_ids_{i:02d}"])


def test_unknown_characters_and_words_occur_in_the_golden_sentences() -> None:
    sentences, _ = golden("char_word")
    options, lexicons = read_manylangs(FIXTURES / "char_word")
    tokens = [token[: options.max_characters_per_token - 2] for sentence in sentences for token in sentence]
    assert any(c not in lexicons.chars for token in tokens for c in token)
    assert any(token not in lexicons.words for token in tokens)
    scripts = {"Cyrillic": "Москва", "CJK": "今天", "Arabic": "مرحبا"}
    assert all(any(word in sentence for sentence in sentences) for word in scripts.values())


def test_output_layer_values_map_to_our_modes() -> None:
    """Their output_layer -1 is our "average", 0 our "bottom" (layer 0), -2 "all"."""
    from flair.data import Sentence

    from flair_elmo_modes import ELMoEmbeddings

    sentences, arrays = golden("char_word")
    exact = {  # their float64 run, in each mode
        "average": [arrays[f"f64_layers_{i:02d}"].mean(axis=0) for i in range(len(sentences))],
        "layer0": [arrays[f"f64_layers_{i:02d}"][0] for i in range(len(sentences))],
    }
    for mode, key in (("average", "average"), ("bottom", "layer0")):
        embeddings = ELMoEmbeddings(str(FIXTURES / "char_word"), embedding_type=mode)
        flair_sentences = [Sentence(tokens) for tokens in sentences]
        embeddings.embed(flair_sentences)
        got = [
            torch.stack([token.get_embedding(embeddings.name) for token in sentence]).cpu().numpy()
            for sentence in flair_sentences
        ]
        theirs = [arrays[f"{key}_{i:02d}"] for i in range(len(sentences))]
        assert [v.shape for v in got] == [v.shape for v in theirs]
        # as accurate as their float32 run, both against their float64 run
        assert_as_accurate(got, theirs, exact[key])


def test_tagger_saves_and_loads_without_the_model_directory(tmp_path: Path) -> None:
    from flair.data import Dictionary, Sentence
    from flair.models import SequenceTagger

    from flair_elmo_modes import ELMoEmbeddings

    directory = copy_case("char_word", tmp_path)
    sentences, arrays = golden("char_word")
    tags = Dictionary(add_unk=False)
    for tag in ("A", "B", "C"):
        tags.add_item(tag)
    embeddings = ELMoEmbeddings(str(directory), embedding_type="all")
    tagger = SequenceTagger(embeddings=embeddings, tag_dictionary=tags, tag_type="x", hidden_size=8, use_crf=False)
    tagger.save(tmp_path / "tagger.pt")
    shutil.rmtree(directory)
    reloaded = SequenceTagger.load(tmp_path / "tagger.pt")
    assert reloaded.embeddings.bilm.lexicons == embeddings.bilm.lexicons
    flair_sentences = [Sentence(tokens) for tokens in sentences]
    reloaded.embeddings.embed(flair_sentences)
    got, theirs, exact = [], [], []
    for i, sentence in enumerate(flair_sentences):
        got.append(torch.stack([token.get_embedding() for token in sentence]).cpu().numpy())  # (T, 3 * dim)
        theirs.append(arrays[f"layers_{i:02d}"].transpose(1, 0, 2).reshape(len(sentence), -1))
        exact.append(arrays[f"f64_layers_{i:02d}"].transpose(1, 0, 2).reshape(len(sentence), -1))
        assert got[i].shape == theirs[i].shape
    assert_as_accurate(got, theirs, exact)  # as accurate as their float32 run, against their float64 run


class _RunsCode:
    """Unpickling this would create ``marker``: what a weights file must never be able to do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_a_pickle_that_needs_classes_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    directory = copy_case("char_only", tmp_path)
    marker = tmp_path / "code-ran"
    weights = torch.load(directory / "encoder.pkl", weights_only=True)
    torch.save({**weights, "payload": _RunsCode(marker)}, directory / "encoder.pkl")
    with pytest.raises(ElmoFileError, match=r"encoder\.pkl: refused: not a plain state dict of tensors"):
        load_manylangs(directory)
    assert not marker.exists()
    # a plain pickle (not torch.save's zip) of the same is refused too
    with open(directory / "encoder.pkl", "wb") as handle:
        pickle.dump(_RunsCode(marker), handle, protocol=2)  # torch.save's protocol
    with pytest.raises(ElmoFileError, match="refused"):
        load_manylangs(directory)
    assert not marker.exists()


def test_a_directory_of_neither_format_lists_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no model here")
    with pytest.raises(FileNotFoundError, match=r"options\.json and weights\.hdf5.*config\.json.*encoder\.pkl"):
        resolve_model(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"not an ELMoForManyLangs model directory: missing config\.json"):
        resolve_model(tmp_path, format="manylangs")
    assert resolve_model(FIXTURES / "char_only").format == MANYLANGS
    with pytest.raises(FileNotFoundError, match=r"found no '\*options\*\.json' files"):
        resolve_model(FIXTURES / "char_only", format="allennlp")


def test_missing_lexicon_and_config_are_named(tmp_path: Path) -> None:
    directory = copy_case("char_word", tmp_path)
    (directory / "word.dic").unlink()
    with pytest.raises(ElmoFileError, match=r"lexicon not found: .*word\.dic"):
        load_manylangs(directory)
    directory = copy_case("char_only", tmp_path / "second")
    (directory / "char.dic").unlink()
    with pytest.raises(ElmoFileError, match=r"lexicon not found: .*char\.dic"):
        ElmoEmbedder(str(directory))
    directory = copy_case("char_only", tmp_path / "third")
    config_name = json.loads((directory / "config.json").read_text())["config_path"]
    (directory / Path(config_name).name).unlink()
    with pytest.raises(ElmoFileError, match=rf"config_path '{config_name}' not found: looked in .*released"):
        load_manylangs(directory)


def test_a_config_that_contradicts_the_weights_names_tensor_and_shapes(tmp_path: Path) -> None:
    directory = copy_case("char_only", tmp_path)
    config_file = directory / Path(json.loads((directory / "config.json").read_text())["config_path"]).name
    config = json.loads(config_file.read_text())
    config["encoder"]["dim"] = 40
    config_file.write_text(json.dumps(config))
    with pytest.raises(
        ElmoFileError, match=r"'forward_layer_0\.input_linearity\.weight' has shape \(128, 16\).*\(160, 16\)"
    ):
        load_manylangs(directory)


def test_it_is_never_written_as_allennlp_weights(tmp_path: Path) -> None:
    with pytest.raises(ElmoFileError, match=r"cannot be written as AllenNLP's weights\.hdf5"):
        save_bilm(tmp_path / "out", load_manylangs(FIXTURES / "char_word"))
    assert not (tmp_path / "out").exists()


def test_unsupported_configurations_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ElmoFileError, match=r"'encoder\.name' is 'lstm'; only 'elmo'"):
        load_manylangs(FIXTURES / "lstm_encoder")
    with pytest.raises(ElmoFileError, match=r"'token_embedder\.char_dim' is 0: word-only models are not supported"):
        load_manylangs(FIXTURES / "word_only")


def test_lexicons_are_read_as_their_reader_does(tmp_path: Path) -> None:
    path = tmp_path / "char.dic"
    path.write_text("a\t0\n\t1\n\u00a0\t2\nb\t3\na\t4\n", encoding="utf-8")
    # stripped lines: a whitespace token is lost and filed under U+3000; a later entry wins
    assert read_lexicon(path) == {"a": 4, "\u3000": 2, "b": 3}
    path.write_text("a\t0\nb 1\n", encoding="utf-8")
    with pytest.raises(ElmoFileError, match=r"char\.dic, line 2: expected 'token<TAB>id'"):
        read_lexicon(path)
    with pytest.raises(ElmoFileError, match="character lexicon lacks <bow>, <eow>"):
        Lexicons({"<bos>": 0, "<eos>": 1, "<oov>": 2, "<pad>": 3})
    specials = {"<bos>": 0, "<eos>": 1, "<oov>": 2, "<pad>": 3, "<bow>": 4, "<eow>": 5}
    with pytest.raises(ElmoFileError, match=r"'x' has id 9, but 7 entries give ids 0\.\.6"):
        Lexicons(specials | {"x": 9})


def test_token_ids_follow_their_rules() -> None:
    chars = {"<bos>": 0, "<eos>": 1, "<oov>": 2, "<pad>": 3, "<bow>": 4, "<eow>": 5, "a": 6, "b": 7}
    words = {"<oov>": 0, "<pad>": 1, "ab": 2, "<bos>": 3}
    lexicons = Lexicons(chars, words, word_dim=4)
    shifted = lambda ids: [i + 1 for i in ids]  # noqa: E731
    # <eow> opens a word and <bow> closes it (their create_one_batch); unknown 'c' is <oov>
    assert lexicons.token_ids("abc", 7) == shifted([5, 6, 7, 2, 4, 3, 3, 0])
    # cut to max_characters - 2 = 2 characters, for the word lookup too ("abab" -> "ab")
    assert lexicons.token_ids("abab", 4) == shifted([5, 6, 7, 4, 2])
    assert lexicons.marker_ids(BOS, 5) == shifted([5, 0, 4, 3, 3, 3])
    assert lexicons.marker_ids(EOS, 5) == shifted([5, 1, 4, 3, 3, 0])  # <eos> not a word: <oov>
    assert lexicons.token_ids(BOS, 7) == lexicons.marker_ids(BOS, 7)  # spelt so in the text: the marker
    # ... after the cut: with 4 slots "<bos>" is the text "<b" (the sentence markers are never cut)
    assert lexicons.token_ids(BOS, 4) == shifted([5, 2, 7, 4, 0]) and lexicons.marker_ids(BOS, 4)[1] == 1
    ids = lexicons.batch_to_ids([["ab"], []], 5)
    assert ids.shape == (2, 1, 6) and int(ids[1].abs().sum()) == 0


def test_embed_command_takes_the_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import h5py

    from flair_elmo_modes.cli.main import main

    sentences, arrays = golden("char_word")
    text = tmp_path / "multilingual.txt"
    kept = [i for i, tokens in enumerate(sentences) if all(t.split() == [t] for t in tokens)]  # no inner spaces
    text.write_text("\n".join(" ".join(sentences[i]) for i in kept) + "\n", encoding="utf-8")
    output = tmp_path / "top.hdf5"
    assert main(["embed", str(text), str(output), "--model", str(FIXTURES / "char_word"), "--top", "--quiet"]) == 0
    with h5py.File(output, "r") as handle:
        assert len(handle) == len(kept) + 1  # + sentence_to_index
        got = [handle[str(row)][()] for row in range(len(kept))]
    theirs = [arrays[f"layers_{i:02d}"][-1] for i in kept]
    assert [v.shape for v in got] == [v.shape for v in theirs]
    # as accurate as their float32 run, against their float64 run
    assert_as_accurate(got, theirs, [arrays[f"f64_layers_{i:02d}"][-1] for i in kept])
    code = main(["embed", str(text), str(output), "--model", str(FIXTURES / "char_word"), "--model-format", "allennlp"])
    assert code != 0 and "found no '*options*.json' files" in capsys.readouterr().err


def test_info_describes_the_directory(capsys: pytest.CaptureFixture[str]) -> None:
    from flair_elmo_modes.cli.main import main

    assert main(["info", str(FIXTURES / "char_word"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    bilm = load_manylangs(FIXTURES / "char_word")
    assert info["kind"] == "local ELMoForManyLangs" and info["output_layers"] == 3 and info["layer_dim"] == 32
    assert info["parameters"] == sum(p.numel() for p in bilm.parameters()) - 8 - 8  # our two zero rows 0
    assert info["architecture"]["word_lexicon"] == len(bilm.lexicons.words)
    assert main(["info", str(FIXTURES / "char_word")]) == 0
    assert "words" in capsys.readouterr().out
