"""``flair-elmo demo`` (cli/demo.py): on a model directory and on the shipped model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from flair_elmo_modes import ElmoEmbedder, catalogue, models
from flair_elmo_modes.cli import demo
from tests.cli.helpers import assert_one_line_error, run
from tests.helpers import FLOAT64_EPS, write_random_model


def cosine_tolerance(dim: int) -> float:
    """Largest difference of two float64 cosine similarities of the same float32 vectors of ``dim``
    elements, computed by other formulas (a.b / (|a| |b|), or a/|a| . b/|b|): the dot product is
    within dim half-ulps of |a| |b| (Cauchy-Schwarz), each norm within dim / 2 + 1, the division and
    products a few more, so each is within (2 dim + 4) half-ulps of the exact cosine."""
    return (2 * dim + 4) * FLOAT64_EPS


# --------------------------------------------------------------------------------------------
# demo


def test_demo_on_a_model_dir(model_dir: Path, embedder: ElmoEmbedder, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo", "--model", model_dir, "--json")
    assert code == 0 and err == ""
    results = json.loads(out)
    dim = embedder.dim
    seed = demo.SEED_SENTENCE.split()
    assert results["layer_shapes"] == [[len(seed), dim]] * embedder.num_layers
    assert results["embedding_length"] == {"all": embedder.num_layers * dim, "top": dim, "average": dim}
    tokens = demo.CELL_SENTENCE.split()
    positions = results["cell_positions"]
    assert [tokens[i] for i in positions] == ["cell"] * 3
    layers = embedder.embed_sentence(tokens).astype(np.float64)  # the demo's run: bitwise its vectors
    for layer, row in zip(layers, results["cell_similarity"], strict=True):
        vectors = [layer[i] / np.linalg.norm(layer[i]) for i in positions]
        expected = [vectors[0] @ vectors[1], vectors[0] @ vectors[2], vectors[1] @ vectors[2]]
        np.testing.assert_allclose(row, expected, rtol=0, atol=cosine_tolerance(dim))
    # characters only: three copies of one vector, whose cosine is 1 up to float64 rounding
    assert results["cell_similarity"][0] == pytest.approx([1.0, 1.0, 1.0], abs=cosine_tolerance(dim))
    # The LSTM layers see the context. A cosine within 1e-6 of 1 would mean vectors within ~1.4e-3
    # (sqrt(2e-6)) of each other in direction: 10^4 float32 roundings, so not all three may be.
    assert not all(math.isclose(value, 1.0, abs_tol=1e-6) for value in results["cell_similarity"][-1])

    code, text, _ = run(capsys, "demo", "--model", model_dir)
    assert code == 0
    assert f"layer 0 (characters): ({len(seed)}, {dim})" in text
    assert "prison cell ~ cell phone" in text
    assert f"{results['cell_similarity'][1][0]:.4f}" in text


@pytest.fixture
def shipped_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "shipped"
    directory.mkdir()
    monkeypatch.setattr(catalogue, "SHIPPED_DIR", directory)
    return directory


def test_demo_default_needs_the_shipped_model(shipped_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo")
    assert code == 2 and out == ""
    assert_one_line_error(
        err, f"the shipped model {models.SHIPPED_MODEL!r} is not installed", "pass a model directory or a published"
    )


def test_demo_defaults_to_the_shipped_model(shipped_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_random_model(shipped_dir / models.SHIPPED_MODEL, seed=3)
    code, out, _ = run(capsys, "demo", "--json")
    assert code == 0 and json.loads(out)["model"] == models.SHIPPED_MODEL
    info = json.loads(run(capsys, "info", models.SHIPPED_MODEL, "--json")[1])
    assert info["kind"] == "shipped" and info["weight_file"]["exists"] is True


@pytest.mark.skipif(
    not (catalogue.SHIPPED_DIR / models.SHIPPED_MODEL / "options.json").is_file(), reason="shipped model not built yet"
)
def test_demo_on_the_shipped_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "--json")
    results = json.loads(out)
    assert code == 0 and results["model"] == models.SHIPPED_MODEL
    dim = results["layer_shapes"][0][1]
    # characters only: three copies of one vector, whose cosine is 1 up to float64 rounding
    assert results["cell_similarity"][0] == pytest.approx([1.0, 1.0, 1.0], abs=cosine_tolerance(dim))
