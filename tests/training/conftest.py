from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

WORDS = "the a cat dog sat ran on under mat rug quickly slowly big small red blue".split()


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Training tests run on one thread: much faster than two when other processes share the CPU.

    Module scope, so that it is also in force for module-scoped fixtures that train.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_corpus(path: Path, n_sentences: int, seed: int) -> Path:
    """A small text with structure an LM can learn: 'the <adj> <noun> <verb> on the <noun>'."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_sentences):
        det = rng.choice(["the", "a"])
        adjective = rng.choice(["big", "small", "red", "blue"])
        noun, place = rng.choice(["cat", "dog"]), rng.choice(["mat", "rug"])
        verb, manner = rng.choice(["sat", "ran"]), rng.choice(["quickly", "slowly"])
        lines.append(f"{det} {adjective} {noun} {verb} {manner} {rng.choice(['on', 'under'])} the {place} .")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def corpus_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 300-sentence training text and a 40-sentence dev text."""
    directory = tmp_path_factory.mktemp("corpus")
    return write_corpus(directory / "train.txt", 300, seed=0), write_corpus(directory / "dev.txt", 40, seed=1)
