"""Freely licensed English text from Debian packages: WordNet 3.0 glosses and the Python 3.11 docs.

- ``wordnet-base`` (``/usr/share/wordnet/data.{noun,verb,adj,adv}``): every synset's gloss,
  split into its definitions and its quoted example sentences. WordNet 3.0 license (use, copy,
  modify and distribute for any purpose, keeping Princeton's notice).
- ``python3.11-doc`` (``/usr/share/doc/python3.11/html``): the prose paragraphs (``<p>`` in the
  page body, code blocks left out) of every page except the indexes. PSF License Version 2
  (code examples also Zero-Clause BSD).

Text is split into sentences (after ``.!?`` followed by a capital or digit) and tokens
(``\\w+`` runs joined by hyphens, apostrophes and dots, every other non-space character alone); sentences of fewer
than 2 or more than 60 tokens are dropped. Splits hold out whole units: a WordNet synset
(by a CRC32 hash of its offset and part of speech) or a whole documentation page (seeded
shuffle); about 5% dev and 10% test each.
"""

from __future__ import annotations

import random
import re
import zlib
from html.parser import HTMLParser
from pathlib import Path

WORDNET_DIR = Path("/usr/share/wordnet")
PYTHON_DOCS_DIR = Path("/usr/share/doc/python3.11/html")
DEBIAN_PACKAGES = {"wordnet-base": "1:3.0-37", "python3.11-doc": "3.11.2-6+deb12u9"}
SPLIT_SEED = 2024
DEV_PERCENT, TEST_PERCENT = 5, 10
MIN_TOKENS, MAX_TOKENS = 2, 60
SPLITS = ("train", "dev", "test")

#: Notices the two licenses ask to keep with copies and derived works.
NOTICES = [
    "WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. THIS SOFTWARE AND DATABASE IS "
    'PROVIDED "AS IS" AND PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED. '
    "Full license: /usr/share/doc/wordnet-base/copyright.",
    "Python documentation: Copyright (c) 2001-2023 Python Software Foundation; All Rights Reserved. Licensed under "
    "the PSF License Agreement (Version 2); full text: /usr/share/doc/python3.11-doc/copyright.",
]

TOKEN = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“(\[]?[A-Z0-9])")


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text)


def sentences_of(paragraph: str) -> list[list[str]]:
    """Tokenized sentences of a paragraph, within the length limits."""
    result = []
    for sentence in SENTENCE_END.split(" ".join(paragraph.split())):
        tokens = tokenize(sentence)
        if MIN_TOKENS <= len(tokens) <= MAX_TOKENS:
            result.append(tokens)
    return result


def wordnet_units(wordnet_dir: Path = WORDNET_DIR) -> dict[str, list[list[str]]]:
    """Sentences of each synset, keyed ``<pos><offset>``: definitions, then examples."""
    units: dict[str, list[list[str]]] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (wordnet_dir / f"data.{pos}").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue  # the license header
            offset = line.split(" ", 1)[0]
            gloss = line.split(" | ", 1)[1].strip()
            sentences = []
            for part in re.split(r";\s*", gloss):
                part = part.strip().strip('"').strip()
                if part:
                    sentences.extend(sentences_of(part))
            units[f"{pos[0]}{offset}"] = sentences
    return units


class _ParagraphParser(HTMLParser):
    """Collects the text of ``<p>`` elements inside the page body, skipping ``<pre>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._body_depth = 0  # div nesting depth inside <div class="body">, 0 outside
        self._in_p = 0
        self._in_pre = 0
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "div":
            if self._body_depth:
                self._body_depth += 1
            elif ("role", "main") in attrs or ("class", "body") in attrs:
                self._body_depth = 1
        elif tag == "p" and self._body_depth:
            self._in_p += 1
        elif tag == "pre":
            self._in_pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._body_depth:
            self._body_depth -= 1
        elif tag == "p" and self._in_p:
            self._in_p -= 1
            if not self._in_p:
                self.paragraphs.append("".join(self._text))
                self._text = []
        elif tag == "pre" and self._in_pre:
            self._in_pre -= 1

    def handle_data(self, data: str) -> None:
        if self._in_p and not self._in_pre:
            self._text.append(data)


def python_doc_pages(docs_dir: Path = PYTHON_DOCS_DIR) -> dict[str, list[list[str]]]:
    """Sentences of each documentation page, keyed by its path relative to ``docs_dir``."""
    pages = {}
    for path in sorted(docs_dir.rglob("*.html")):
        relative = path.relative_to(docs_dir).as_posix()
        if relative.startswith(("_", "genindex")) or relative in {"search.html", "py-modindex.html"}:
            continue
        parser = _ParagraphParser()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        sentences = [s for paragraph in parser.paragraphs for s in sentences_of(paragraph)]
        if sentences:
            pages[relative] = sentences
    return pages


def split_wordnet(keys: list[str]) -> dict[str, list[str]]:
    """Synsets by CRC32 of the key: < DEV_PERCENT -> dev, < DEV + TEST -> test, else train."""
    split: dict[str, list[str]] = {name: [] for name in SPLITS}
    for key in sorted(keys):
        bucket = zlib.crc32(f"{SPLIT_SEED}:{key}".encode()) % 100
        name = "dev" if bucket < DEV_PERCENT else "test" if bucket < DEV_PERCENT + TEST_PERCENT else "train"
        split[name].append(key)
    return split


def split_pages(pages: list[str]) -> dict[str, list[str]]:
    """Whole pages, seeded shuffle: the first 5% dev, the next 10% test, the rest train."""
    shuffled = sorted(pages)
    random.Random(SPLIT_SEED).shuffle(shuffled)
    n_dev = round(len(shuffled) * DEV_PERCENT / 100)
    n_test = round(len(shuffled) * TEST_PERCENT / 100)
    return {
        "dev": sorted(shuffled[:n_dev]),
        "test": sorted(shuffled[n_dev : n_dev + n_test]),
        "train": sorted(shuffled[n_dev + n_test :]),
    }


def build(out_dir: Path) -> tuple[dict[str, Path], dict]:
    """Write ``train.txt``, ``dev.txt``, ``test.txt`` into ``out_dir``; returns them and the split record."""
    for path in (WORDNET_DIR / "data.noun", PYTHON_DOCS_DIR / "index.html"):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: apt-get install {' '.join(DEBIAN_PACKAGES)}")
    synsets = wordnet_units()
    pages = python_doc_pages()
    wordnet_split = split_wordnet(list(synsets))
    page_split = split_pages(list(pages))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, counts = {}, {}
    for name in SPLITS:
        # Pages first, then synsets, each in sorted order: the text does not depend on hashing order.
        sentences = [s for page in page_split[name] for s in pages[page]]
        sentences += [s for key in wordnet_split[name] for s in synsets[key]]
        path = out_dir / f"{name}.txt"
        path.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
        paths[name] = path
        counts[name] = {
            "python_doc_pages": len(page_split[name]),
            "wordnet_synsets": len(wordnet_split[name]),
            "sentences": len(sentences),
            "words": sum(len(s) for s in sentences),
        }
    record = {
        "corpus": "WordNet 3.0 glosses (Debian wordnet-base) + Python 3.11 documentation prose (python3.11-doc)",
        "debian_packages": DEBIAN_PACKAGES,
        "licenses": {
            "wordnet-base": "WordNet 3.0 license (Princeton): use, copy, modify, distribute for any purpose",
            "python3.11-doc": "PSF License Version 2 (code examples also Zero-Clause BSD)",
        },
        "notices": NOTICES,
        "rule": (
            f"whole units; WordNet synset '<pos letter><offset>' -> crc32('{SPLIT_SEED}:' + key) % 100: "
            f"< {DEV_PERCENT} dev, < {DEV_PERCENT + TEST_PERCENT} test, else train; Python doc pages (relative "
            f"paths) sorted, shuffled with random.Random({SPLIT_SEED}): first {DEV_PERCENT}% dev, next "
            f"{TEST_PERCENT}% test, rest train"
        ),
        "tokens": f"regex {TOKEN.pattern!r}; sentences split after .!? before a capital or digit; "
        f"{MIN_TOKENS}..{MAX_TOKENS} tokens kept",
        "brown_corpus": "not used for training: every Brown corpus file is unseen by this model",
        "counts": counts,
        "python_doc_pages": page_split,
    }
    return paths, record
