"""Parity with the original TensorFlow bilm-tf activations shipped in allennlp 0.9.0's wheel.

The wheel is fetched once with ``pip download`` into a cache directory outside the repository
(``$FLAIR_ELMO_TEST_CACHE`` or ``~/.cache/flair-elmo-modes-tests``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from flair_elmo_modes import ElmoEmbedder

WHEEL = "allennlp-0.9.0-py3-none-any.whl"
FIXTURE_DIR = "allennlp/tests/fixtures/elmo/"
FILES = (
    "options.json",
    "lm_weights.hdf5",
    "sentences.json",
    "lm_embeddings_0.hdf5",
    "lm_embeddings_1.hdf5",
    "lm_embeddings_2.hdf5",
)


@pytest.fixture(scope="module")
def bilm_tf_fixture() -> Path:
    cache = Path(os.environ.get("FLAIR_ELMO_TEST_CACHE", Path.home() / ".cache" / "flair-elmo-modes-tests"))
    target = cache / "allennlp-0.9.0-elmo-fixture"
    if not all((target / name).is_file() for name in FILES):
        cache.mkdir(parents=True, exist_ok=True)
        if not (cache / WHEEL).is_file():
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "allennlp==0.9.0", "-d", str(cache)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                pytest.fail(f"could not fetch {WHEEL} with {' '.join(command)}:\n{result.stderr[-2000:]}")
        target.mkdir(exist_ok=True)
        with zipfile.ZipFile(cache / WHEEL) as wheel:
            for name in FILES:
                (target / name).write_bytes(wheel.read(FIXTURE_DIR + name))
    return target


def test_top_layer_matches_bilm_tf_when_stateful(bilm_tf_fixture: Path) -> None:
    """As AllenNLP's own test: batch i holds sentence i of each of the three files, in order."""
    sentences = json.loads((bilm_tf_fixture / "sentences.json").read_text())
    expected = []
    for k in range(3):
        with h5py.File(bilm_tf_fixture / f"lm_embeddings_{k}.hdf5") as handle:
            # stored as (2, tokens, dim): forward and backward halves of the top layer
            expected.append([np.concatenate([handle[str(i)][0], handle[str(i)][1]], axis=-1) for i in range(10)])
    embedder = ElmoEmbedder(bilm_tf_fixture / "options.json", bilm_tf_fixture / "lm_weights.hdf5", stateful=True)
    max_diff = 0.0
    for i in range(10):
        batch = [sentences[k][i].split() for k in range(3)]
        for k, layers in enumerate(embedder.embed_batch(batch)):
            # AllenNLP's test: numpy.allclose(..., atol=1e-6), whose default rtol is 1e-5.
            np.testing.assert_allclose(layers[-1], expected[k][i], rtol=1e-5, atol=1e-6)
            max_diff = max(max_diff, float(np.abs(layers[-1] - expected[k][i]).max()))
    print(f"bilm-tf max abs diff: {max_diff:.2e}")


def test_stateless_differs_from_bilm_tf(bilm_tf_fixture: Path) -> None:
    """The reference activations depend on carried state: without it the later batches differ."""
    sentences = json.loads((bilm_tf_fixture / "sentences.json").read_text())
    with h5py.File(bilm_tf_fixture / "lm_embeddings_0.hdf5") as handle:
        expected = np.concatenate([handle["9"][0], handle["9"][1]], axis=-1)
    embedder = ElmoEmbedder(bilm_tf_fixture / "options.json", bilm_tf_fixture / "lm_weights.hdf5")
    assert np.abs(embedder.embed_sentence(sentences[0][9].split())[-1] - expected).max() > 1e-2
