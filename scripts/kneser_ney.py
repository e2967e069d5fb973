"""Count-based baseline: interpolated Kneser-Ney n-gram language models, forward and backward.

    python -m scripts.kneser_ney --text-dir DIR/free/text          # DIR: build_shipped_model's --cache-dir
    python -m scripts.kneser_ney --text-dir DIR/text --min-count 2  # Brown (build_shipped_model --corpus brown)

Same data, vocabulary and ``<UNK>`` handling as the neural model (``Vocabulary.build`` on the
training text with the shipped recipe's ``min_count``), and the same predictions: per sentence
``w_1 .. w_n </S>`` for the forward model, ``w_n .. w_1 <S>`` for the backward model (which is
the forward model of the reversed sentence). Histories are padded with the start marker.

Interpolated Kneser-Ney (Chen & Goodman 1998, one discount per order ``D = n1 / (n1 + 2 n2)``):
the highest order uses counts, lower orders continuation counts (distinct left contexts), and
the unigram level is interpolated with the uniform distribution over the vocabulary.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from benchmarks._common import DEFAULT_CACHE
from flair_elmo_modes.bilm.characters import BOS_TOKEN, EOS_TOKEN
from flair_elmo_modes.training.data import Vocabulary
from flair_elmo_modes.training.shards import read_sentences
from scripts.build_shipped_model import RECIPE


class KneserNey:
    """An interpolated Kneser-Ney model of ``order`` over word ids."""

    def __init__(self, sentences: Sequence[Sequence[int]], order: int, vocab_size: int, start: int, end: int) -> None:
        self.order, self.vocab_size, self.start, self.end = order, vocab_size, start, end
        top: Counter[tuple[int, ...]] = Counter()
        for sentence in sentences:
            padded = [start] * (order - 1) + list(sentence) + [end]
            for i in range(order - 1, len(padded)):
                top[tuple(padded[i - order + 1 : i + 1])] += 1
        # numerators[k][ngram]: raw counts at the top order, continuation counts below.
        self.numerators: dict[int, Counter[tuple[int, ...]]] = {order: top}
        for k in range(order - 1, 0, -1):
            self.numerators[k] = Counter(ngram[1:] for ngram in self.numerators[k + 1])
        self.denominators: dict[int, Counter[tuple[int, ...]]] = {}
        self.types: dict[int, Counter[tuple[int, ...]]] = {}
        self.discounts: dict[int, float] = {}
        for k, numerator in self.numerators.items():
            denominator: Counter[tuple[int, ...]] = Counter()
            types: Counter[tuple[int, ...]] = Counter()
            for ngram, count in numerator.items():
                denominator[ngram[:-1]] += count
                types[ngram[:-1]] += 1
            self.denominators[k], self.types[k] = denominator, types
            count_of_counts = Counter(count for count in numerator.values() if count <= 2)
            n1, n2 = count_of_counts[1], count_of_counts[2]
            self.discounts[k] = n1 / (n1 + 2 * n2) if n1 else 0.5

    def prob(self, history: tuple[int, ...], word: int) -> float:
        """``P(word | history)``, ``history`` the ``order - 1`` preceding ids."""
        p = 1.0 / self.vocab_size
        for k in range(1, self.order + 1):
            context = history[len(history) - (k - 1) :] if k > 1 else ()
            denominator = self.denominators[k].get(context, 0)
            if denominator == 0:
                continue
            discount = self.discounts[k]
            count = self.numerators[k].get((*context, word), 0)
            p = max(count - discount, 0.0) / denominator + discount * self.types[k][context] / denominator * p
        return p

    def nll(self, sentences: Sequence[Sequence[int]]) -> tuple[float, int]:
        """Summed negative log-likelihood (nats) of ``w_1 .. w_n end`` per sentence, and the count."""
        total, count = 0.0, 0
        for sentence in sentences:
            padded = [self.start] * (self.order - 1) + list(sentence) + [self.end]
            for i in range(self.order - 1, len(padded)):
                total -= math.log(self.prob(tuple(padded[i - self.order + 1 : i]), padded[i]))
                count += 1
        return total, count


def evaluate(text_dir: Path, orders: Sequence[int], min_count: int, extra: dict[str, Path] | None = None) -> dict:
    """Dev and test perplexity (and of each ``extra`` text) of each direction for each order."""
    train = read_sentences(text_dir / "train.txt")
    vocab = Vocabulary.build(train, min_count=min_count)
    bos, eos = vocab.index(BOS_TOKEN), vocab.index(EOS_TOKEN)

    def ids(sentences: list[list[str]]) -> list[list[int]]:
        return [[vocab.index(word) for word in sentence] for sentence in sentences]

    files = {name: text_dir / f"{name}.txt" for name in ("train", "dev", "test")} | (extra or {})
    data = {name: ids(read_sentences(path)) for name, path in files.items()}
    results: dict = {"vocab_size": len(vocab), "min_count": min_count}
    for order in orders:
        forward = KneserNey(data["train"], order, len(vocab), start=bos, end=eos)
        backward = KneserNey([s[::-1] for s in data["train"]], order, len(vocab), start=eos, end=bos)
        results[f"order_{order}"] = {
            split: {
                "forward": math.exp(_ratio(forward.nll(data[split]))),
                "backward": math.exp(_ratio(backward.nll([s[::-1] for s in data[split]]))),
                "tokens": sum(len(s) + 1 for s in data[split]),
            }
            for split in data
            if split != "train"
        }
    return results


def _ratio(pair: tuple[float, int]) -> float:
    return pair[0] / pair[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--text-dir",
        type=Path,
        default=DEFAULT_CACHE / "free" / "text",
        help=f"train.txt, dev.txt, test.txt as build_shipped_model writes them (default {DEFAULT_CACHE}/free/text)",
    )
    parser.add_argument("--orders", default="2,3", help="n-gram orders (default 2,3)")
    parser.add_argument("--min-count", type=int, default=RECIPE["min_count"], help="as the shipped recipe")
    parser.add_argument("--extra", action="append", default=[], help="NAME=PATH: another text to evaluate")
    args = parser.parse_args(argv)
    orders = [int(order) for order in args.orders.split(",")]
    extra = {name: Path(path) for name, _, path in (item.partition("=") for item in args.extra)}
    json.dump(evaluate(args.text_dir, orders, args.min_count, extra), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
