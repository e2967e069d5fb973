"""The catalogue of named models and :class:`ModelSpec`, the one reading of a model's name."""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

import pytest

from flair_elmo_modes import catalogue, models
from flair_elmo_modes.bilm.options import ElmoOptions
from flair_elmo_modes.errors import UsageError
from flair_elmo_modes.models import ModelNotDownloaded, ModelSpec
from tests.helpers import write_random_model

# bilm-tf's naming of published files: 2x4096_512_2048cnn_2xhighway = 2 layers of 4096 cells,
# projection 512, 2048 CNN channels, 2 highway layers. The catalogue is checked against it.
NAMED_ARCHITECTURE = re.compile(r"(\d+)x(\d+)_(\d+)_(\d+)cnn_(\d+)xhighway")


@pytest.mark.parametrize("name", sorted(catalogue.PUBLISHED_MODELS))
def test_each_published_architecture_agrees_with_its_file_names(name: str) -> None:
    model = catalogue.PUBLISHED_MODELS[name]
    match = NAMED_ARCHITECTURE.search(model.options_url)
    if model.options is None:  # unknown to this release: its file names must not say it either
        assert match is None
        return
    assert match is not None and NAMED_ARCHITECTURE.search(model.weights_url) is not None
    layers, cells, projection, channels, highway = (int(group) for group in match.groups())
    options = model.options
    assert (options.n_layers, options.cell_dim, options.projection_dim) == (layers, cells, projection)
    assert (options.n_filters, options.n_highway) == (channels, highway)
    assert catalogue.architecture_name(options) == match.group(0)
    # what every published options.json holds besides those numbers (ELMO_FACTS: n_characters 262)
    assert options.n_characters == 262 and options.max_characters_per_token == 50
    assert ElmoOptions.from_dict(options.to_dict(), source=name) == options  # a valid options.json


def test_aliases_name_published_models() -> None:
    for alias, name in catalogue.ALIASES.items():
        assert catalogue.published_model(alias) is catalogue.PUBLISHED_MODELS[name]
    assert catalogue.published_model("no-such-model") is None


def test_parse_tells_every_kind_apart(tmp_path: Path) -> None:
    directory = tmp_path / "my-model"
    write_random_model(directory)
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in directory.iterdir():
            handle.write(path, path.name)
    assert ModelSpec.parse("small").kind == models.PUBLISHED
    assert ModelSpec.parse("large") == ModelSpec(models.PUBLISHED, "original5.5B")  # an alias, canonical name
    assert ModelSpec.parse(catalogue.SHIPPED_MODEL).kind == models.SHIPPED
    assert ModelSpec.parse(directory) == ModelSpec(models.DIRECTORY, "my-model", path=directory)
    assert ModelSpec.parse(str(archive)) == ModelSpec(models.ZIP, "archive", path=archive)
    by_url = ModelSpec.parse(None, "https://h/elmo/options.json", "https://h/elmo/weights.hdf5")
    assert (by_url.kind, by_url.name) == (models.FILES, "elmo")  # the URL's directory, not the cache's
    named = ModelSpec.parse("ignored", directory / "options.json", directory / "weights.hdf5")
    assert (named.kind, named.name) == (models.FILES, "my-model")  # both files given: the model is ignored
    options_only = ModelSpec.parse(directory / "options.json", options_alone=True)
    assert options_only.kind == models.OPTIONS
    with pytest.raises(UsageError, match="unknown ELMo model"):
        ModelSpec.parse(directory / "options.json")  # a file alone is no model, unless options_alone


def test_a_local_directory_wins_over_a_model_of_the_same_name(tmp_path: Path, monkeypatch) -> None:
    write_random_model(tmp_path / "small")
    monkeypatch.chdir(tmp_path)
    assert ModelSpec.parse("small").kind == models.DIRECTORY


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(model="nope"), "unknown ELMo model 'nope'"),
        (dict(model=None), "no model given"),
        (dict(options_file="o.json"), "give both options_file and weight_file"),
        (dict(format="tensorflow"), "unknown model format 'tensorflow'"),
        (dict(options_file="o.json", weight_file="w.hdf5", format="manylangs"), "is a directory"),
    ],
)
def test_parse_refuses_what_names_no_model(arguments: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        ModelSpec.parse(**arguments)
    assert isinstance(caught.value, ValueError)  # Python's convention for bad arguments holds too


def test_a_missing_shipped_model_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(catalogue, "SHIPPED_DIR", tmp_path)  # an installation without the model
    with pytest.raises(UsageError, match=f"the shipped model '{catalogue.SHIPPED_MODEL}' is not installed"):
        ModelSpec.parse(catalogue.SHIPPED_MODEL)


def test_resolve_without_download_never_fetches(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FLAIR_CACHE_ROOT", str(tmp_path))
    for module in ("flair", "flair.file_utils"):
        monkeypatch.setitem(sys.modules, module, None)  # a download would have to import Flair: it fails
    spec = ModelSpec.parse("small")
    with pytest.raises(ModelNotDownloaded, match="not in the cache"):
        spec.resolve(download=False)
    for url in spec.published.urls:  # once cached, the same call finds the files
        location = models.cached_location(url, "small")
        location.parent.mkdir(parents=True, exist_ok=True)
        location.write_text(url)
    files = spec.resolve(download=False)
    assert files.options_file.read_text() == spec.published.options_url
    assert files.weight_file.read_text() == spec.published.weights_url


def test_resolve_finds_the_files_of_each_local_kind(tmp_path: Path) -> None:
    options_file, weight_file = write_random_model(tmp_path / "m")
    for spec in (ModelSpec.parse(tmp_path / "m"), ModelSpec.parse(None, options_file, weight_file)):
        files = spec.resolve()
        assert (files.options_file, files.weight_file, files.format) == (options_file, weight_file, models.ALLENNLP)
    shipped = ModelSpec.parse(catalogue.SHIPPED_MODEL).resolve()
    assert shipped.options_file == catalogue.SHIPPED_DIR / catalogue.SHIPPED_MODEL / "options.json"
    with pytest.raises(UsageError, match="an options file alone is not a model"):
        ModelSpec.parse(options_file, options_alone=True).resolve()


@pytest.mark.parametrize(
    "options_file, weight_file, expected",
    [
        (None, None, ModelSpec(models.PUBLISHED, catalogue.DEFAULT_MODEL)),
        ("small", None, ModelSpec(models.PUBLISHED, "small")),
    ],
)
def test_allennlp_arguments(options_file, weight_file, expected: ModelSpec) -> None:
    assert ModelSpec.from_allennlp_arguments(options_file, weight_file) == expected


def test_allennlp_arguments_refuse_half_a_pair(tmp_path: Path) -> None:
    options_file, weight_file = write_random_model(tmp_path)
    with pytest.raises(UsageError, match="needs options_file too"):
        ModelSpec.from_allennlp_arguments(None, weight_file)
    with pytest.raises(UsageError, match="needs weight_file too"):
        ModelSpec.from_allennlp_arguments(options_file)
    with pytest.raises(FileNotFoundError, match="options file not found"):
        ModelSpec.from_allennlp_arguments(tmp_path / "missing.json", weight_file)
    assert ModelSpec.from_allennlp_arguments(options_file, weight_file).kind == models.FILES
    assert ModelSpec.from_allennlp_arguments(tmp_path, format="allennlp").format == "allennlp"
