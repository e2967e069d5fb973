"""Parity with AllenNLP 2.10.1's ``_ElmoBiLm`` on golden files from ``fixtures/golden/make_golden.py``."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flair_elmo_modes.bilm import batch_to_ids, load_bilm
from tests.helpers import assert_as_accurate, float64_tolerance

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


def our_layers(directory: Path, sentences: list[list[str]], dtype: torch.dtype) -> list[np.ndarray]:
    bilm = load_bilm(directory / "options.json", directory / "weights.hdf5").to(dtype).eval()
    with torch.no_grad():
        layers = bilm(batch_to_ids(sentences)).layers
    return [layers[:, i, : len(sentence)].numpy() for i, sentence in enumerate(sentences)]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("key", ["f32", "f64"])
def test_layers_match_allennlp(case: str, key: str) -> None:
    directory, sentences, expected = load_case(case)
    ours = our_layers(directory, sentences, torch.float32 if key == "f32" else torch.float64)
    for i in range(len(sentences)):
        assert ours[i].shape == expected[f"{key}_{i}"].shape, f"sentence {i}"
    theirs_f32 = [expected[f"f32_{i}"] for i in range(len(sentences))]
    theirs_f64 = [expected[f"f64_{i}"] for i in range(len(sentences))]
    if key == "f32":
        # float32: as accurate as AllenNLP's own float32 run, both measured against its float64 run
        assert_as_accurate(ours, theirs_f32, theirs_f64)
        return
    # float64: the same function of the same numbers, summed in other orders. AllenNLP's float32
    # error on these sentences measures how much the model amplifies rounding; float64_tolerance
    # scales it to float64 (about 1e-14 here, where float32 differs by 1e-6).
    atol = float64_tolerance(theirs_f32, theirs_f64)
    for i in range(len(sentences)):
        np.testing.assert_allclose(ours[i], theirs_f64[i], rtol=0, atol=atol, err_msg=f"sentence {i}")
