"""``flair-elmo info`` (cli/info.py): models, files, parameter counts, --system."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from flair_elmo_modes.bilm import load_bilm
from flair_elmo_modes.bilm.fast.kernels import kernel_name
from flair_elmo_modes.catalogue import PUBLISHED_MODELS
from flair_elmo_modes.cli import main
from flair_elmo_modes.model_info import count_parameters
from tests.cli.helpers import assert_one_line_error, run
from tests.helpers import torch_threads, write_random_model

# --------------------------------------------------------------------------------------------
# info


def test_info_local_model(
    model_dir: Path, tiny_model_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "info", model_dir, "--json")
    assert code == 0 and err == ""
    info = json.loads(out)
    bilm = load_bilm(*tiny_model_files)
    options = bilm.options
    assert info["kind"] == "local"
    assert info["options_file"]["path"] == str(tiny_model_files[0])
    assert info["weight_file"] == {
        "path": str(tiny_model_files[1]),
        "exists": True,
        "bytes": tiny_model_files[1].stat().st_size,
    }
    assert info["parameters"] == sum(p.numel() for p in bilm.parameters())
    assert info["output_layers"] == options.n_layers + 1 and info["layer_dim"] == 2 * options.projection_dim
    assert info["architecture"]["filters"] == [list(f) for f in options.filters]
    assert info["architecture"]["n_highway"] == options.n_highway
    layer = 2 * options.projection_dim
    assert info["embedding_length"] == {
        "all": (options.n_layers + 1) * layer,
        "top": layer,
        "average": layer,
        "bottom": layer,
        "mix": layer,
    }

    code, text, _ = run(capsys, "info", model_dir)
    assert code == 0
    rows = dict(line.split("  ", 1) for line in text.splitlines())
    assert rows["parameters"].strip() == f"{info['parameters']:,}"
    assert rows["embedding length"].strip().startswith(f"all={3 * layer}, top={layer}, average={layer}")
    assert str(tiny_model_files[1]) in text


def test_info_options_file(tiny_model_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "info", tiny_model_files[0], "--json")
    info = json.loads(out)
    assert code == 0 and info["kind"] == "options file"
    assert info["weight_file"]["path"] == str(tiny_model_files[1])


def test_info_published_model_does_not_download(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import flair
    import flair.file_utils

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("info must not download")

    monkeypatch.setattr(flair, "cache_root", tmp_path)
    monkeypatch.setattr(flair.file_utils, "cached_path", no_network)
    monkeypatch.setattr(flair.file_utils, "get_from_cache", no_network)
    code, out, _ = run(capsys, "info", "original", "--json")
    info = json.loads(out)
    assert code == 0 and info["kind"] == "published"
    assert info["options_file"]["exists"] is False and info["options_file"]["url"].startswith("https://")
    # described from the catalogue: the whole architecture and its parameter count, without a file
    catalogued = PUBLISHED_MODELS["original"].options
    assert info["architecture"]["source"] == "catalogue" and info["architecture"]["lstm_layers"] == 2
    assert info["embedding_length"]["all"] == 3 * 2 * info["architecture"]["projection_dim"]
    assert info["parameters"] == count_parameters(catalogued)
    code, out, _ = run(capsys, "info", "pt", "--json")  # a published model the catalogue cannot describe
    assert code == 0 and json.loads(out)["architecture"] is None and json.loads(out)["parameters"] is None
    code, text, _ = run(capsys, "info", "original")
    assert code == 0 and "not cached" in text and str(tmp_path / "embeddings") in text

    # Once the options file is cached, info reads it (and still does not download the weights).
    options_url = PUBLISHED_MODELS["small"].options_url
    cached = tmp_path / "embeddings" / "elmo-small" / options_url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    write_random_model(tmp_path / "m")
    cached.write_bytes((tmp_path / "m" / "options.json").read_bytes())
    info = json.loads(run(capsys, "info", "small", "--json")[1])
    assert info["options_file"]["exists"] is True and info["weight_file"]["exists"] is False
    assert info["architecture"]["source"] == "options.json" and info["parameters"] > 0


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_info_refuses_non_finite_options_instead_of_printing_invalid_json(
    value: str, tiny_model_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = json.loads(tiny_model_files[0].read_text())
    raw["lstm"]["cell_clip"] = "PLACEHOLDER"
    options_file = tmp_path / "options.json"
    options_file.write_text(json.dumps(raw).replace('"PLACEHOLDER"', value))
    code, out, err = run(capsys, "info", options_file, "--json")
    assert code == 2 and out == ""
    assert_one_line_error(err, str(options_file), "'lstm.cell_clip'", "expected a finite number")


def test_info_unknown_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "info", str(tmp_path / "nothing"))
    assert code == 2 and out == ""
    assert_one_line_error(err, "unknown ELMo model", "original")


def test_info_system_reports_this_process(capsys: pytest.CaptureFixture[str]) -> None:
    with torch_threads(1):
        assert main(["info", "--system", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["versions"]["torch"] == torch.__version__ and info["versions"]["numpy"] == np.__version__
    assert info["versions"]["python"] == platform.python_version()
    assert info["threads"]["torch"] == 1  # the count in force, not a default
    assert info["cpu"]["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["math"]["mkl"] == torch.backends.mkl.is_available()
    assert info["math"]["onednn"] == torch.backends.mkldnn.is_available()
    assert info["cuda"] == [] or torch.cuda.is_available()
    assert set(info["kernels"]) == {name for name, model in PUBLISHED_MODELS.items() if model.options is not None}
    # the plan is the decision a forward of that many rows makes (tests/bilm/fast/test_kernels.py checks
    # that choose_kernel builds the kernel kernel_name names)
    original = PUBLISHED_MODELS["original"].options
    for batch, kernel in info["kernels"]["original"].items():
        assert kernel == kernel_name(original.cell_dim, original.projection_dim, int(batch), torch.zeros(0))
    assert main(["info", "--system"]) == 0
    text = capsys.readouterr().out
    assert f"torch {torch.__version__}" in text and "kernel rule original" in text and "native bf16" in text
    assert info["kernel_plan"]["file"] in text
