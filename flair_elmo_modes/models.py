"""Named ELMo models: the published AllenNLP files, the model shipped in this package, local dirs.

Two formats: AllenNLP's (``options.json`` + ``weights.hdf5``, bilm-tf's weights; NLPL's archives
name the weights ``model.hdf5``) and ELMoForManyLangs' (a directory with ``config.json``,
``char.dic``, ``token_embedder.pkl``, ``encoder.pkl``; see :mod:`flair_elmo_modes.bilm.manylangs`),
told apart by their files. A ``.zip`` of a model directory (NLPL's format) is unpacked once into
the cache (:mod:`flair_elmo_modes.model_zip`) and is then that directory.

Published files are downloaded on first use with Flair's ``cached_path`` into
``flair.cache_root / "embeddings"``, as Flair's own embeddings do; never at import time.
Flair is imported only for a download: a file already in the cache is found without it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from flair_elmo_modes.bilm.errors import require_directory, require_file
from flair_elmo_modes.checksums import file_sha256
from flair_elmo_modes.model_zip import is_zip_path, unpack_model_zip

if TYPE_CHECKING:
    from flair_elmo_modes.bilm.model import ElmoBiLm
    from flair_elmo_modes.bilm.options import ElmoOptions

_S3 = "https://s3-us-west-2.amazonaws.com/allennlp/models/elmo"
_ORIGINAL = "https://allennlp.s3.amazonaws.com/models/elmo/2x4096_512_2048cnn_2xhighway"

#: AllenNLP's published models, with the URLs Flair's legacy ``ELMoEmbeddings`` uses.
PUBLISHED_MODELS: dict[str, tuple[str, str]] = {
    "small": (
        f"{_S3}/2x1024_128_2048cnn_1xhighway/elmo_2x1024_128_2048cnn_1xhighway_options.json",
        f"{_S3}/2x1024_128_2048cnn_1xhighway/elmo_2x1024_128_2048cnn_1xhighway_weights.hdf5",
    ),
    "medium": (
        f"{_S3}/2x2048_256_2048cnn_1xhighway/elmo_2x2048_256_2048cnn_1xhighway_options.json",
        f"{_S3}/2x2048_256_2048cnn_1xhighway/elmo_2x2048_256_2048cnn_1xhighway_weights.hdf5",
    ),
    "original": (
        f"{_ORIGINAL}/elmo_2x4096_512_2048cnn_2xhighway_options.json",
        f"{_ORIGINAL}/elmo_2x4096_512_2048cnn_2xhighway_weights.hdf5",
    ),
    "original5.5B": (
        f"{_S3}/2x4096_512_2048cnn_2xhighway_5.5B/elmo_2x4096_512_2048cnn_2xhighway_5.5B_options.json",
        f"{_S3}/2x4096_512_2048cnn_2xhighway_5.5B/elmo_2x4096_512_2048cnn_2xhighway_5.5B_weights.hdf5",
    ),
    "pt": (
        f"{_S3}/contributed/pt/elmo_pt_options.json",
        f"{_S3}/contributed/pt/elmo_pt_weights.hdf5",
    ),
    "pubmed": (
        f"{_S3}/contributed/pubmed/elmo_2x4096_512_2048cnn_2xhighway_options.json",
        f"{_S3}/contributed/pubmed/elmo_2x4096_512_2048cnn_2xhighway_weights_PubMed_only.hdf5",
    ),
}

#: SHA-256 of each published model's (options, weights) files, checked once, right after a download.
#: Unknown to this release (it was built without network access), so None: no check. Fill them in
#: from a trusted download to have every later download verified.
PUBLISHED_SHA256: dict[str, tuple[str | None, str | None]] = {name: (None, None) for name in PUBLISHED_MODELS}

#: bilm-tf's naming of published files: 2x4096_512_2048cnn_2xhighway = 2 layers of 4096 cells,
#: projection 512, 2048 CNN channels, 2 highway layers.
_ARCHITECTURE_NAME = re.compile(r"(\d+)x(\d+)_(\d+)_(\d+)cnn_(\d+)xhighway")


@dataclass(frozen=True)
class NamedArchitecture:
    """What a published model's file name says of its architecture (known without a download)."""

    lstm_layers: int
    cell_dim: int
    projection_dim: int
    n_filters: int
    n_highway: int


def published_architecture(name: str) -> NamedArchitecture | None:
    """The architecture in published model ``name``'s file name; None if the name does not say (``pt``)."""
    match = _ARCHITECTURE_NAME.search(PUBLISHED_MODELS[ALIASES.get(name, name)][0])
    return NamedArchitecture(*(int(group) for group in match.groups())) if match else None


#: Other names Flair's legacy class accepts.
ALIASES = {"large": "original5.5B", "5.5B": "original5.5B", "portuguese": "pt"}

#: The model trained by ``flair-elmo train`` and shipped inside this package (the demo's, offline).
SHIPPED_MODEL = "en-tiny"

#: The model used when none is named, decided once for ``ELMoEmbeddings``, ``ElmoEmbedder``
#: and ``flair-elmo embed``/``info``: AllenNLP's (its ``DEFAULT_OPTIONS_FILE``/``DEFAULT_WEIGHT_FILE``)
#: and Flair's default, downloaded on first use.
DEFAULT_MODEL = "original"
SHIPPED_DIR = Path(__file__).parent / "models"

OPTIONS_NAME = "options.json"
WEIGHTS_NAME = "weights.hdf5"
#: The NLPL vector repository's (and ``simple_elmo``'s) name for the weights: taken when a
#: directory has no ``*weights*.hdf5``.
NLPL_WEIGHTS_NAME = "model.hdf5"

ALLENNLP = "allennlp"
MANYLANGS = "manylangs"
#: Model formats: AllenNLP's files, an ELMoForManyLangs directory.
FORMATS = (ALLENNLP, MANYLANGS)
# What makes a directory an ELMoForManyLangs model (bilm.manylangs reads it; its names are not
# imported from there so that resolving a model needs no torch). Its lexicons are checked when read.
_MANYLANGS_FILES = ("config.json", "token_embedder.pkl", "encoder.pkl")


class ModelDownloadError(OSError):
    """A published model could not be downloaded."""


@dataclass(frozen=True)
class ModelFiles:
    """Where a model's files are, the name it goes by, and its format.

    For ``format == "manylangs"`` ``options_file`` is the directory's ``config.json`` and
    ``weight_file`` its ``encoder.pkl``; the model is the whole directory (:attr:`directory`).
    """

    name: str
    options_file: Path
    weight_file: Path
    format: str = ALLENNLP

    @property
    def directory(self) -> Path:
        return self.weight_file.parent


def load_model(files: ModelFiles) -> ElmoBiLm:
    """The biLM of ``files``, in either format."""
    if files.format == MANYLANGS:
        from flair_elmo_modes.bilm.manylangs import load_manylangs

        return load_manylangs(files.directory)
    from flair_elmo_modes.bilm.hdf5 import load_bilm

    return load_bilm(files.options_file, files.weight_file)


def model_options(files: ModelFiles) -> ElmoOptions:
    """The architecture of ``files`` without reading the weights."""
    if files.format == MANYLANGS:
        from flair_elmo_modes.bilm.manylangs import read_manylangs

        return read_manylangs(files.directory)[0]
    from flair_elmo_modes.bilm.options import ElmoOptions

    return ElmoOptions.from_json(files.options_file)


def shipped_models() -> list[str]:
    """Names of the models inside this package."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(path.name for path in SHIPPED_DIR.iterdir() if (path / OPTIONS_NAME).is_file())


def flair_cache_root() -> Path:
    """``flair.cache_root``, without importing Flair when it is not imported yet.

    Flair's rule (``flair/__init__.py``): ``$FLAIR_CACHE_ROOT``, else ``~/.flair``; once Flair is
    imported its (possibly reassigned) ``cache_root`` is used.
    """
    flair = sys.modules.get("flair")
    if flair is not None and hasattr(flair, "cache_root"):
        return Path(flair.cache_root)
    return Path(os.getenv("FLAIR_CACHE_ROOT", Path(Path.home(), ".flair")))


def cache_directory(name: str) -> Path:
    """Where a published model's files are cached: ``flair.cache_root / "embeddings" / "elmo-{name}"``.

    One directory per model: "original" and "pubmed" publish options files of the same name.
    """
    return flair_cache_root() / "embeddings" / f"elmo-{name}"


def zip_cache_directory() -> Path:
    """Where model archives (``.zip``) are unpacked: ``flair.cache_root / "embeddings" / "elmo-zips"``,
    one directory per archive content (see :func:`~flair_elmo_modes.model_zip.unpack_model_zip`)."""
    return cache_directory("zips")


def url_cache_directory(url: str) -> Path:
    """Where a user-given URL is cached: ``elmo-files/{first 16 hex digits of sha256(url)}``.

    Keyed by the whole URL, so ``https://h/a/weights.hdf5`` and ``https://h/b/weights.hdf5``
    never share a file.
    """
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return cache_directory("files") / digest


def cached_location(url: str, name: str | None = None) -> Path:
    """The file Flair's ``cached_path`` keeps ``url`` in, for published model ``name`` or a user URL.

    Its name is the URL's part after the last ``/``, as in Flair's ``get_from_cache``.
    """
    directory = url_cache_directory(url) if name is None else cache_directory(name)
    return directory / re.sub(r".+/", "", url)


def available_models() -> list[str]:
    """Every model name :func:`resolve_model` accepts besides local paths."""
    return shipped_models() + list(PUBLISHED_MODELS) + list(ALIASES)


def resolve_model(
    model: str | Path | None = DEFAULT_MODEL,
    options_file: str | Path | None = None,
    weight_file: str | Path | None = None,
    format: str | None = None,
) -> ModelFiles:
    """Find (downloading if needed) the files of a model.

    Args:
        model: a shipped or published model name, or a directory: AllenNLP's, holding
            ``options.json`` and ``weights.hdf5`` (AllenNLP's ``*options.json`` / ``*weights.hdf5``
            names work too, and NLPL's ``model.hdf5``), or an ELMoForManyLangs model's
            (``config.json``, ``char.dic``, ``token_embedder.pkl``, ``encoder.pkl``); or a ``.zip``
            of such a directory (NLPL's archives), unpacked once into :func:`zip_cache_directory`
            and named after the archive. Ignored when both files are given: the model is then
            named after the weight file (or its directory, for a plain ``weights.hdf5``).
        options_file: explicit path or URL of ``options.json``.
        weight_file: explicit path or URL of ``weights.hdf5``.
        format: ``"allennlp"`` or ``"manylangs"`` to read a directory as that format only (an
            error names the files it lacks); None tells them apart by their files.

    Raises:
        ValueError: an unknown model name or format, or only one of the two files given.
        FileNotFoundError: a local file or directory does not exist, or a directory (or archive)
            is neither format (the message lists the files looked for).
        ElmoFileError: a ``.zip`` is damaged or holds members unsafe to unpack (names the file).
        ModelDownloadError: a published model could not be fetched; names the model and URL.
    """
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown model format {format!r}: expected one of {', '.join(FORMATS)}")
    if format == MANYLANGS and (options_file is not None or weight_file is not None):
        raise ValueError("an ELMoForManyLangs model is a directory: pass it as the model, without options/weight files")
    if (options_file is None) != (weight_file is None):
        raise ValueError("give both options_file and weight_file, or neither")
    if options_file is not None and weight_file is not None:
        weights = _fetch(str(weight_file))
        # Named as the user knows the file: a URL's last directory, not the cache's hash directory.
        where = PurePosixPath(urlparse(str(weight_file)).path) if "://" in str(weight_file) else weights
        name = where.parent.name if where.stem == WEIGHTS_NAME.split(".")[0] else where.stem
        return ModelFiles(name, _fetch(str(options_file)), weights)
    if model is None:
        raise ValueError("no model given: pass a model name, a directory, or options_file and weight_file")
    directory = require_directory(model, "model directory")
    if directory is not None:  # a local directory wins over a model of the same name
        return _directory_files(directory, format)
    if is_zip_path(model):
        return _zip_files(Path(model), format)
    name = ALIASES.get(str(model), str(model))
    if format == MANYLANGS:
        raise FileNotFoundError(f"ELMoForManyLangs model directory not found: {model}")
    if name in PUBLISHED_MODELS:
        options_url, weights_url = PUBLISHED_MODELS[name]
        options_sha256, weights_sha256 = PUBLISHED_SHA256[name]
        return ModelFiles(name, _fetch(options_url, name, options_sha256), _fetch(weights_url, name, weights_sha256))
    if name in shipped_models():
        return ModelFiles(name, SHIPPED_DIR / name / OPTIONS_NAME, SHIPPED_DIR / name / WEIGHTS_NAME)
    raise ValueError(
        f"unknown ELMo model {str(model)!r}: expected one of {', '.join(available_models())}, "
        "or a directory holding options.json and weights.hdf5 (or a .zip of one)"
    )


def _zip_files(path: Path, format: str | None) -> ModelFiles:
    """The files of the model directory zipped in ``path``, unpacked on first use, named after it."""
    label = f"{path} (a zip archive)"
    directory = unpack_model_zip(path, zip_cache_directory(), check=lambda root: _directory_files(root, format, label))
    return dataclasses.replace(_directory_files(directory, format, label), name=path.stem)


def _directory_files(directory: Path, format: str | None, label: str | None = None) -> ModelFiles:
    """A local model directory's files, its format told by them unless ``format`` says it.

    ``label`` names the directory in errors (default: its path; an archive's name for an unpacked one).
    """
    label = label or str(directory)
    manylangs_missing = [name for name in _MANYLANGS_FILES if not (directory / name).is_file()]
    if format == MANYLANGS or (format is None and not manylangs_missing):
        if manylangs_missing:
            raise FileNotFoundError(
                f"{label}: not an ELMoForManyLangs model directory: missing {', '.join(manylangs_missing)}"
            )
        return ModelFiles(directory.name, directory / "config.json", directory / "encoder.pkl", MANYLANGS)
    has_options = any(directory.glob("*options*.json"))
    has_weights = any(directory.glob("*weights*.hdf5")) or (directory / NLPL_WEIGHTS_NAME).is_file()
    if format is None and not (has_options and has_weights):
        raise FileNotFoundError(
            f"{label} is not an ELMo model directory: expected AllenNLP's options.json and weights.hdf5 "
            f"(or '*options*.json' and '*weights*.hdf5', or NLPL's {NLPL_WEIGHTS_NAME}), or ELMoForManyLangs' "
            f"{', '.join(_MANYLANGS_FILES)} and char.dic (missing {', '.join(manylangs_missing)})"
        )
    return ModelFiles(directory.name, _find_one(directory, "options", ".json", label), _weight_file(directory, label))


def _weight_file(directory: Path, label: str) -> Path:
    """``weights.hdf5``, else the one ``*weights*.hdf5``, else NLPL's ``model.hdf5``."""
    nlpl = directory / NLPL_WEIGHTS_NAME
    if not any(directory.glob("*weights*.hdf5")) and nlpl.is_file():
        return nlpl
    return _find_one(directory, "weights", ".hdf5", label)


def _find_one(directory: Path, stem: str, suffix: str, label: str) -> Path:
    exact = directory / f"{stem}{suffix}"
    if exact.is_file():
        return exact
    found = sorted(directory.glob(f"*{stem}*{suffix}"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise FileNotFoundError(f"{label}: found {what} '*{stem}*{suffix}' files; expected exactly one")
    return found[0]


def _fetch(url_or_path: str, model: str | None = None, sha256: str | None = None) -> Path:
    """A local path as is, a URL through Flair's cache (see :func:`cached_location`); a file it
    downloads is checked against ``sha256`` when given (a mismatch is deleted and refused)."""
    if "://" not in url_or_path:
        return require_file(url_or_path, "ELMo file")
    # Flair's get_from_cache returns a cached file as is, without a request: so do we, without Flair.
    location = cached_location(url_or_path, model)
    if location.is_file():
        return location
    from flair.file_utils import cached_path

    location = cached_location(url_or_path, model)  # importing Flair may have set its cache root
    label = f"ELMo model {model!r}" if model else "ELMo file"
    try:
        downloaded = cached_path(url_or_path, cache_dir=location.parent)
    except Exception as error:  # requests, OSError, HTTP errors: all mean "not downloadable now"
        raise ModelDownloadError(f"could not download {label} from {url_or_path}: {error}") from error
    if sha256 is not None:
        found = file_sha256(downloaded)
        if found != sha256:
            downloaded.unlink()  # never leave it in the cache, where the next call would take it as is
            raise ModelDownloadError(
                f"the download of {label} from {url_or_path} has SHA-256 {found}, expected {sha256}: "
                "damaged in transit or changed at the source; it was deleted, try again"
            )
    return Path(downloaded)
