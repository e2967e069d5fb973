"""Fixtures of the corpus-job tests: shards of text, and one local Ray cluster of 2 CPUs for the session."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

WORDS = "the cat sat on a mat while dogs ran over green fields , rivers and hills . Ökonomie naïve 東京 ?".split()


def write_shard(path: Path, lines: int, seed: int) -> Path:
    """``lines`` distinct sentences of 2 to 31 tokens drawn from ``seed``, one per line."""
    generator = random.Random(seed)
    sentences = [
        " ".join([*generator.choices(WORDS, k=generator.randint(1, 30)), f"s{seed}-{i}"]) for i in range(lines)
    ]
    path.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    return path


def write_corpus(directory: Path, sizes: tuple[int, ...]) -> list[Path]:
    """Shards ``part-0.txt``, ``part-1.txt``, ... of the given sizes (lines) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    return [write_shard(directory / f"part-{i}.txt", size, seed=i) for i, size in enumerate(sizes)]


#: CPUs of the tests' Ray cluster, and the workers most tests run: embed_corpus gives each worker
#: CLUSTER_CPUS // WORKERS CPUs, and as many torch threads.
CLUSTER_CPUS = 2
WORKERS = 2


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A local Ray cluster with 2 CPUs, started once: ``embed_corpus`` uses the one this process has."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=CLUSTER_CPUS, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()
