import dataclasses
from pathlib import Path

import pytest

from flair_elmo_modes import models
from flair_elmo_modes.models import ModelDownloadError, resolve_model
from tests.helpers import write_random_model


def test_catalogue_has_the_published_models_with_flair_legacy_urls() -> None:
    assert set(models.PUBLISHED_MODELS) == {"small", "medium", "original", "original5.5B", "pt", "pubmed"}
    for name, model in models.PUBLISHED_MODELS.items():
        options_url, weights_url = model.urls
        assert options_url.startswith("https://") and options_url.endswith("options.json"), name
        assert weights_url.startswith("https://") and weights_url.endswith(".hdf5"), name
    small_options, _ = models.PUBLISHED_MODELS["small"].urls
    assert "2x1024_128_2048cnn_1xhighway" in small_options
    assert models.ALIASES["large"] == "original5.5B" and models.ALIASES["portuguese"] == "pt"


def test_failed_download_names_model_and_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import flair

    monkeypatch.setattr(flair, "cache_root", tmp_path)
    unreachable = dataclasses.replace(
        models.PUBLISHED_MODELS["small"],
        options_url="http://127.0.0.1:9/small_options.json",
        weights_url="http://127.0.0.1:9/small_weights.hdf5",
    )
    monkeypatch.setitem(models.PUBLISHED_MODELS, "small", unreachable)
    with pytest.raises(ModelDownloadError, match=r"'small' from http://127\.0\.0\.1:9/small_options\.json"):
        resolve_model("small")


def test_local_directory_with_allennlp_file_names(tmp_path: Path, tiny_model_files) -> None:
    options_file, weight_file = tiny_model_files
    (tmp_path / "elmo_tiny_options.json").write_bytes(options_file.read_bytes())
    (tmp_path / "elmo_tiny_weights.hdf5").write_bytes(weight_file.read_bytes())
    files = resolve_model(tmp_path)
    assert files.name == tmp_path.name
    assert files.options_file.name == "elmo_tiny_options.json" and files.weight_file.name == "elmo_tiny_weights.hdf5"


def test_explicit_files_and_errors(tmp_path: Path, tiny_model_files) -> None:
    files = resolve_model("original", *tiny_model_files)  # the files win over the name
    assert files.options_file == tiny_model_files[0] and files.name == tiny_model_files[1].parent.name
    renamed = tmp_path / "elmo_x_weights.hdf5"
    renamed.write_bytes(tiny_model_files[1].read_bytes())
    assert resolve_model(None, tiny_model_files[0], renamed).name == "elmo_x_weights"
    renamed.unlink()
    with pytest.raises(ValueError, match="give both"):
        resolve_model(None, options_file=tiny_model_files[0])
    with pytest.raises(FileNotFoundError, match="ELMo file not found"):
        resolve_model(None, tmp_path / "options.json", tmp_path / "weights.hdf5")
    with pytest.raises(FileNotFoundError, match=r"not an ELMo model directory.*options.json.*char.dic"):
        resolve_model(tmp_path)
    (tmp_path / "a_options.json").write_text("{}")
    (tmp_path / "b_options.json").write_text("{}")
    (tmp_path / "weights.hdf5").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="expected exactly one"):
        resolve_model(tmp_path)
    with pytest.raises(ValueError, match=r"unknown ELMo model 'nonsense'.*original"):
        resolve_model("nonsense")


def test_each_published_model_has_its_own_cache_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import flair

    monkeypatch.setattr(flair, "cache_root", tmp_path)
    original, pubmed = models.PUBLISHED_MODELS["original"].options_url, models.PUBLISHED_MODELS["pubmed"].options_url
    assert original.rsplit("/", 1)[1] == pubmed.rsplit("/", 1)[1]  # same file name on the server
    assert models.cached_location(original, "original") != models.cached_location(pubmed, "pubmed")
    assert models.cached_location(original, "original").parent == tmp_path / "embeddings" / "elmo-original"


def test_a_local_directory_wins_over_a_model_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_random_model(tmp_path / "small")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("small").options_file == Path("small") / "options.json"


def fake_download(calls: list[str]):
    """A stand-in for Flair's ``cached_path``: writes the URL into ``cache_dir / <last URL part>``."""

    def cached_path(url: str, cache_dir: Path) -> Path:
        calls.append(url)
        target = Path(cache_dir) / url.rsplit("/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(url)
        return target

    return cached_path


def test_user_urls_with_the_same_file_name_are_cached_apart(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import flair
    import flair.file_utils

    calls: list[str] = []
    monkeypatch.setattr(flair, "cache_root", tmp_path)
    monkeypatch.setattr(flair.file_utils, "cached_path", fake_download(calls))
    a = resolve_model(options_file="https://h/a/options.json", weight_file="https://h/a/weights.hdf5")
    b = resolve_model(options_file="https://h/b/options.json", weight_file="https://h/b/weights.hdf5")
    assert len({a.options_file, b.options_file, a.weight_file, b.weight_file}) == 4
    assert a.weight_file.read_text() == "https://h/a/weights.hdf5"
    assert b.weight_file.read_text() == "https://h/b/weights.hdf5"
    assert b.options_file.read_text() == "https://h/b/options.json"
    assert a.weight_file.name == "weights.hdf5"
    assert a.options_file.parent.parent == tmp_path / "embeddings" / "elmo-files"
    assert (a.name, b.name) == ("a", "b")
    assert len(calls) == 4
    # Asked again, each URL is found in the cache without a download.
    assert resolve_model(options_file="https://h/b/options.json", weight_file="https://h/b/weights.hdf5") == b
    assert len(calls) == 4


def test_a_cached_file_is_found_without_importing_flair(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    monkeypatch.setenv("FLAIR_CACHE_ROOT", str(tmp_path))
    for module in ("flair", "flair.file_utils"):
        monkeypatch.setitem(sys.modules, module, None)  # "not imported", and importing it fails
    options_url, weights_url = models.PUBLISHED_MODELS["small"].urls
    for url in (options_url, weights_url):
        location = tmp_path / "embeddings" / "elmo-small" / url.rsplit("/", 1)[1]
        location.parent.mkdir(parents=True, exist_ok=True)
        location.write_text(url)
    files = resolve_model("small")
    assert files.options_file.read_text() == options_url and files.weight_file.read_text() == weights_url
    assert files.options_file.parent == tmp_path / "embeddings" / "elmo-small"
    # A file not in the cache needs flair's download.
    with pytest.raises(ImportError):
        resolve_model(options_file="https://h/c/options.json", weight_file="https://h/c/weights.hdf5")


@pytest.mark.slow
def test_cache_root_without_flair_agrees_with_flair(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    script = (
        "import importlib, json, os, flair\n"
        "roots = [str(flair.cache_root)]\n"
        "os.environ['FLAIR_CACHE_ROOT'] = os.environ['ROOT_TO_SET']\n"
        "roots.append(str(importlib.reload(flair).cache_root))\n"
        "print(json.dumps(roots))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "FLAIR_CACHE_ROOT"}
    env.update(HOME=str(tmp_path / "home"), ROOT_TO_SET=str(tmp_path / "elsewhere"))
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    by_flair = json.loads(run.stdout.splitlines()[-1])

    monkeypatch.setitem(sys.modules, "flair", None)
    monkeypatch.delenv("FLAIR_CACHE_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ours = [str(models.flair_cache_root())]
    monkeypatch.setenv("FLAIR_CACHE_ROOT", str(tmp_path / "elsewhere"))
    ours.append(str(models.flair_cache_root()))
    assert ours == by_flair == [str(tmp_path / "home" / ".flair"), str(tmp_path / "elsewhere")]


def test_a_directory_with_nlpl_model_hdf5_resolves(tmp_path: Path, tiny_model_files) -> None:
    """NLPL's layout (simple_elmo's): options.json and model.hdf5; weights.hdf5 wins where both are."""
    options_file, weight_file = tiny_model_files
    (tmp_path / "options.json").write_bytes(options_file.read_bytes())
    (tmp_path / "model.hdf5").write_bytes(weight_file.read_bytes())
    files = resolve_model(tmp_path)
    assert (files.options_file.name, files.weight_file.name) == ("options.json", "model.hdf5")
    (tmp_path / "weights.hdf5").write_bytes(weight_file.read_bytes())
    assert resolve_model(tmp_path).weight_file.name == "weights.hdf5"
    (tmp_path / "weights.hdf5").unlink()
    (tmp_path / "model.hdf5").unlink()
    with pytest.raises(FileNotFoundError, match=r"not an ELMo model directory.*model\.hdf5"):
        resolve_model(tmp_path)
