"""Small samples of the two corpora in their published layouts, for tests that must stay offline."""

from __future__ import annotations

import random
from pathlib import Path

NOUNS = ["dog/nn", "cat/nn", "jury/nn", "City/nn-tl", "Atlanta/np-tl", "dogs/nns", "1/2/cd"]
VERBS = ["said/vbd", "runs/vbz", "isn't/bez*", "it's/pps+bez", "said/vbd-hl", "élan/fw-nn"]
BROWN_IDS = ["ca01", "ca02", "ca03", "ca04", "ca05", "cb01", "cb02", "cb03"]


def brown_sentence(rng: random.Random, file_id: str) -> str:
    words = ["The/at", rng.choice(NOUNS), rng.choice(VERBS), "the/at", rng.choice(NOUNS), f"{file_id}ville/np", "./."]
    return " ".join(words)


def write_brown(directory: Path, ids: list[str] = BROWN_IDS, sentences_per_file: int = 6) -> Path:
    """Brown files in NLTK's layout: tab-indented sentences separated by blank lines, and ``cats.txt``."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for file_id in ids:
        lines = [f"\n\n\t{brown_sentence(rng, file_id)}\n" for _ in range(sentences_per_file)]
        (directory / file_id).write_text("".join(lines), encoding="utf-8")
    (directory / "README").write_text("not a corpus file\n", encoding="utf-8")
    genres = {"a": "news", "b": "editorial"}
    (directory / "cats.txt").write_text("".join(f"{i} {genres.get(i[1], 'other')}\n" for i in ids), encoding="utf-8")
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
