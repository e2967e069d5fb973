"""Model selection shared by the subcommands (cli/common.py): --model, --options-file/--weight-file, the default."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from flair_elmo_modes import ElmoEmbedder, models
from tests.cli.helpers import LINES, assert_one_line_error, assert_untouched, expected_arrays, run, write_input
from tests.helpers import cache_as_published


def test_embed_with_explicit_files_equals_model_dir(
    tmp_path: Path, tiny_model_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", LINES[:3])
    options, weights = tiny_model_files
    first, second = tmp_path / "a.hdf5", tmp_path / "b.hdf5"
    assert run(capsys, "embed", source, first, "--model", options.parent, "--quiet")[0] == 0
    assert run(capsys, "embed", source, second, "--options-file", options, "--weight-file", weights, "--quiet")[0] == 0
    with h5py.File(first, "r") as a, h5py.File(second, "r") as b:
        assert set(a) == set(b)
        for key in ("0", "1", "2"):
            np.testing.assert_array_equal(a[key][()], b[key][()])


@pytest.mark.parametrize(
    ("model_args", "fragment"),
    [
        (["--model", "no-such-model"], "unknown ELMo model 'no-such-model'"),
        (["--options-file", "options.json"], "--options-file needs --weight-file"),
        (["--model", "small", "--options-file", "o.json", "--weight-file", "w.hdf5"], "not both"),
        (["--options-file", "missing.json", "--weight-file", "missing.hdf5"], "ELMo file not found: missing."),
    ],
)
def test_embed_bad_model(
    tmp_path: Path,
    existing_output: Path,
    capsys: pytest.CaptureFixture[str],
    model_args: list[str],
    fragment: str,
) -> None:
    source = write_input(tmp_path / "in.txt", ["a"])
    code, _, err = run(capsys, "embed", source, existing_output, *model_args)
    assert code == 2
    assert_one_line_error(err, fragment)
    assert_untouched(existing_output)


def test_embed_and_info_default_to_the_default_model_of_allennlp_and_flair(
    tmp_path: Path,
    tiny_model_files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flair_elmo_modes.embeddings import ELMoEmbeddings

    assert models.DEFAULT_MODEL == "original"
    assert inspect.signature(ELMoEmbeddings).parameters["model"].default == models.DEFAULT_MODEL
    monkeypatch.setattr(models, "flair_cache_root", lambda: tmp_path / "cache")
    cached = cache_as_published(tmp_path / "cache", models.DEFAULT_MODEL, tiny_model_files)  # no download
    source = write_input(tmp_path / "in.txt", ["a b", "c"])
    assert run(capsys, "embed", source, tmp_path / "out.hdf5", "--quiet") == (0, "", "")
    expected = expected_arrays(ElmoEmbedder(*tiny_model_files), ["a b", "c"], batch_size=64)
    with h5py.File(tmp_path / "out.hdf5", "r") as handle:
        np.testing.assert_array_equal(handle["0"][()], expected[0])
    info = json.loads(run(capsys, "info", "--json")[1])
    assert info["model"] == models.DEFAULT_MODEL and info["kind"] == "published"
    assert info["options_file"]["path"] == str(cached[0]) and info["options_file"]["exists"] is True
