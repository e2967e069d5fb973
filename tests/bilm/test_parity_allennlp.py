"""Parity with AllenNLP 2.10.1's ``_ElmoBiLm`` on golden files from ``fixtures/golden/make_golden.py``."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flair_elmo_modes.bilm import batch_to_ids, load_bilm

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden"
CASES = sorted(path.name for path in GOLDEN.iterdir() if (path / "expected.npz").is_file())


def load_case(name: str) -> tuple[Path, list[list[str]], dict[str, np.ndarray]]:
    directory = GOLDEN / name
    sentences = json.loads((directory / "sentences.json").read_text(encoding="utf-8"))
    with np.load(directory / "expected.npz") as expected:
        return directory, sentences, dict(expected)


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 5


@pytest.mark.parametrize("case", CASES)
def test_character_ids_match_allennlp(case: str) -> None:
    _, sentences, expected = load_case(case)
    np.testing.assert_array_equal(batch_to_ids(sentences).numpy(), expected["char_ids"])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("dtype", "key", "atol"), [(torch.float32, "f32", 1e-5), (torch.float64, "f64", 1e-9)])
def test_layers_match_allennlp(case: str, dtype: torch.dtype, key: str, atol: float) -> None:
    directory, sentences, expected = load_case(case)
    bilm = load_bilm(directory / "options.json", directory / "weights.hdf5").to(dtype).eval()
    with torch.no_grad():
        layers = bilm(batch_to_ids(sentences)).layers
    for i, sentence in enumerate(sentences):
        ours = layers[:, i, : len(sentence)].numpy()
        assert ours.shape == expected[f"{key}_{i}"].shape
        np.testing.assert_allclose(ours, expected[f"{key}_{i}"], rtol=0, atol=atol, err_msg=f"sentence {i}")
