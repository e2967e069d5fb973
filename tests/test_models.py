from pathlib import Path

import pytest

from flair_elmo_modes import models
from flair_elmo_modes.models import ModelDownloadError, resolve_model
from tests.helpers import write_random_model


def test_catalogue_has_the_published_models_with_flair_legacy_urls() -> None:
    assert set(models.PUBLISHED_MODELS) == {"small", "medium", "original", "original5.5B", "pt", "pubmed"}
    for name, (options_url, weights_url) in models.PUBLISHED_MODELS.items():
        assert options_url.startswith("https://") and options_url.endswith("options.json"), name
        assert weights_url.startswith("https://") and weights_url.endswith(".hdf5"), name
    small_options, _ = models.PUBLISHED_MODELS["small"]
    assert "2x1024_128_2048cnn_1xhighway" in small_options
    assert models.ALIASES["large"] == "original5.5B" and models.ALIASES["portuguese"] == "pt"


def test_failed_download_names_model_and_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import flair

    monkeypatch.setattr(flair, "cache_root", tmp_path)
    unreachable = ("http://127.0.0.1:9/small_options.json", "http://127.0.0.1:9/small_weights.hdf5")
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
    with pytest.raises(FileNotFoundError, match="expected exactly one"):
        resolve_model(tmp_path)
    with pytest.raises(ValueError, match=r"unknown ELMo model 'nonsense'.*original"):
        resolve_model("nonsense")


def test_each_published_model_has_its_own_cache_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import flair

    monkeypatch.setattr(flair, "cache_root", tmp_path)
    original, pubmed = models.PUBLISHED_MODELS["original"][0], models.PUBLISHED_MODELS["pubmed"][0]
    assert original.rsplit("/", 1)[1] == pubmed.rsplit("/", 1)[1]  # same file name on the server
    assert models.cached_location(original, "original") != models.cached_location(pubmed, "pubmed")
    assert models.cached_location(original, "original").parent == tmp_path / "embeddings" / "elmo-original"


def test_a_local_directory_wins_over_a_model_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_random_model(tmp_path / "small")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("small").options_file == Path("small") / "options.json"
