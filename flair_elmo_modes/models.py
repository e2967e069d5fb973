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

from flair_elmo_modes import catalogue
from flair_elmo_modes.bilm.errors import require_directory, require_file
from flair_elmo_modes.catalogue import (
    ALIASES,
    DEFAULT_MODEL,
    PUBLISHED_MODELS,
    SHIPPED_MODEL,
    PublishedModel,
    available_models,
    published_model,
    shipped_models,
)
from flair_elmo_modes.checksums import file_sha256
from flair_elmo_modes.errors import ModelDownloadError, UsageError
from flair_elmo_modes.model_zip import is_zip_path, unpack_model_zip

if TYPE_CHECKING:
    from flair_elmo_modes.bilm.model import ElmoBiLm
    from flair_elmo_modes.bilm.options import ElmoOptions

# Re-exported: the catalogue's names are this module's public API since the first release.
__all__ = [
    "ALIASES",
    "DEFAULT_MODEL",
    "PUBLISHED_MODELS",
    "SHIPPED_MODEL",
    "ModelDownloadError",
    "ModelFiles",
    "ModelNotDownloaded",
    "ModelSpec",
    "available_models",
    "load_model",
    "model_options",
    "resolve_model",
    "shipped_models",
]

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


class ModelNotDownloaded(LookupError):
    """A published model's (or a URL's) files are not in the cache, and no download was allowed."""


#: What a :class:`ModelSpec` names: a model shipped in the package, a published one, a local
#: directory, a ``.zip`` of one, explicit options and weight files (paths or URLs), or (for
#: ``info``, with ``options_alone=True``) an options file alone.
SHIPPED, PUBLISHED, DIRECTORY, ZIP, FILES, OPTIONS = "shipped", "published", "directory", "zip", "files", "options"


@dataclass(frozen=True)
class ModelSpec:
    """A model as a user names it, parsed once by :meth:`parse`; :meth:`resolve` finds its files.

    The one place that decides which model a name, directory, archive or pair of files means: every
    front end (``ElmoEmbedder``, ``ELMoEmbeddings``, AllenNLP's ``Elmo``, the CLI, corpus jobs, the
    trainer's ``init_from``, ``info``) parses its arguments into a spec and resolves it.

    Attributes:
        kind: one of :data:`SHIPPED`, :data:`PUBLISHED`, :data:`DIRECTORY`, :data:`ZIP`, :data:`FILES`,
            :data:`OPTIONS`.
        name: the name the model goes by (a published model's canonical name, not an alias; a
            directory's or archive's name; a weight file's).
        path: the directory, archive or shipped model's directory; None for the other kinds.
        options_file: path or URL of the options file (:data:`FILES`, :data:`OPTIONS`).
        weight_file: path or URL of the weights (:data:`FILES`).
        format: ``"allennlp"`` or ``"manylangs"`` to read a directory as that format only; None
            tells them apart by their files.
    """

    kind: str
    name: str
    path: Path | None = None
    options_file: str | None = None
    weight_file: str | None = None
    format: str | None = None

    @classmethod
    def parse(
        cls,
        model: str | Path | None = DEFAULT_MODEL,
        options_file: str | Path | None = None,
        weight_file: str | Path | None = None,
        format: str | None = None,
        *,
        options_alone: bool = False,
    ) -> ModelSpec:
        """The model meant by these arguments; reads no model file and downloads nothing.

        Args:
            model: a shipped or published model name (or alias), or a directory: AllenNLP's,
                holding ``options.json`` and ``weights.hdf5`` (AllenNLP's ``*options.json`` /
                ``*weights.hdf5`` names work too, and NLPL's ``model.hdf5``), or an
                ELMoForManyLangs model's (``config.json``, ``char.dic``, ``token_embedder.pkl``,
                ``encoder.pkl``); or a ``.zip`` of such a directory (NLPL's archives), unpacked
                on :meth:`resolve` into :func:`zip_cache_directory` and named after the archive.
                Ignored when both files are given. A local directory wins over a model of the
                same name.
            options_file: explicit path or URL of ``options.json``.
            weight_file: explicit path or URL of ``weights.hdf5``.
            format: ``"allennlp"`` or ``"manylangs"`` to read a directory as that format only.
            options_alone: accept an existing ``.json`` file as ``model`` (kind :data:`OPTIONS`,
                for describing an architecture; it does not :meth:`resolve`).

        Raises:
            UsageError: an unknown model name or format, only one of the two files given, or no
                model at all (a ``ValueError``).
            FileNotFoundError: ``format="manylangs"`` and ``model`` is no directory.
            ElmoFileError: ``model`` is a path that cannot be read (a symlink loop).
        """
        if format is not None and format not in FORMATS:
            raise UsageError(f"unknown model format {format!r}: expected one of {', '.join(FORMATS)}")
        if format == MANYLANGS and (options_file is not None or weight_file is not None):
            raise UsageError(
                "an ELMoForManyLangs model is a directory: pass it as the model, without options/weight files"
            )
        if (options_file is None) != (weight_file is None):
            raise UsageError("give both options_file and weight_file, or neither")
        if options_file is not None and weight_file is not None:
            # Named as the user knows the file: a URL's last directory, not the cache's hash directory.
            weights = str(weight_file)
            where = PurePosixPath(urlparse(weights).path) if "://" in weights else Path(weights)
            name = where.parent.name if where.stem == WEIGHTS_NAME.split(".")[0] else where.stem
            return cls(FILES, name, options_file=str(options_file), weight_file=weights)
        if model is None:
            raise UsageError("no model given: pass a model name, a directory, or options_file and weight_file")
        directory = require_directory(model, "model directory")
        if directory is not None:
            return cls(DIRECTORY, directory.name, path=directory, format=format)
        if is_zip_path(model):
            return cls(ZIP, Path(model).stem, path=Path(model), format=format)
        if options_alone and str(model).endswith(".json") and Path(model).is_file():
            return cls(OPTIONS, str(model), options_file=str(model))
        if format == MANYLANGS:
            raise FileNotFoundError(f"ELMoForManyLangs model directory not found: {model}")
        published = published_model(str(model))
        if published is not None:
            return cls(PUBLISHED, published.name, format=format)
        if str(model) in shipped_models():
            return cls(SHIPPED, str(model), path=catalogue.SHIPPED_DIR / str(model), format=format)
        if str(model) == SHIPPED_MODEL:
            missing = catalogue.SHIPPED_DIR / SHIPPED_MODEL / OPTIONS_NAME
            raise UsageError(
                f"the shipped model {SHIPPED_MODEL!r} is not installed (no {missing}); "
                "pass a model directory or a published model name instead"
            )
        raise UsageError(
            f"unknown ELMo model {str(model)!r}: expected one of {', '.join(available_models())}, "
            "or a directory holding options.json and weights.hdf5 (or a .zip of one)"
        )

    @classmethod
    def from_allennlp_arguments(
        cls,
        options_file: str | Path | None = None,
        weight_file: str | Path | None = None,
        format: str | None = None,
    ) -> ModelSpec:
        """The model meant by allennlp's two arguments (``ElmoEmbedder``'s, ``Elmo``'s).

        Neither: :data:`DEFAULT_MODEL` (allennlp's default files). Both: those paths or URLs.
        ``options_file`` alone: a model name (``"small"``, ``"original"``, ``"en-tiny"``, as
        ``ELMoEmbeddings`` takes), a directory (``format`` to insist on one) or a ``.zip`` of one.

        Raises:
            UsageError: only ``weight_file``; ``options_file`` alone names a file, not a model;
                ``format`` with anything but a model alone.
            FileNotFoundError: a local ``options_file`` given with ``weight_file`` does not exist
                (named before the weights, as allennlp does).
        """
        if format is not None:
            if weight_file is not None or options_file is None:
                raise UsageError(f"format={format!r} needs a model directory (or name) as options_file, alone")
            return cls.parse(options_file, format=format)
        if options_file is None and weight_file is None:
            return cls.parse(DEFAULT_MODEL)
        if options_file is None:
            raise UsageError(f"weight_file {weight_file} needs options_file too")
        if weight_file is not None:
            if "://" not in str(options_file) and not Path(options_file).is_file():
                raise FileNotFoundError(f"ELMo options file not found: {options_file}")
            return cls.parse(None, options_file, weight_file)
        if "://" in str(options_file) or (Path(options_file).is_file() and not is_zip_path(options_file)):
            raise UsageError(
                f"options_file {options_file} needs weight_file too (or pass a model name or directory alone)"
            )
        return cls.parse(options_file)

    @property
    def published(self) -> PublishedModel | None:
        """The catalogue's record of a :data:`PUBLISHED` model; None for the other kinds."""
        return PUBLISHED_MODELS[self.name] if self.kind == PUBLISHED else None

    def resolve(self, download: bool = True) -> ModelFiles:
        """The model's files: downloaded (published models, URLs) or unpacked (archives) if needed.

        Args:
            download: fetch files not yet in Flair's cache; False raises :class:`ModelNotDownloaded`
                instead (an archive is still unpacked: that needs no network).

        Raises:
            FileNotFoundError: a local file or directory does not exist, or a directory (or archive)
                is neither format (the message lists the files looked for).
            ElmoFileError: a ``.zip`` is damaged or holds members unsafe to unpack (names the file).
            ModelDownloadError: a published model could not be fetched; names the model and URL.
            ModelNotDownloaded: ``download=False`` and a file is not in the cache.
            UsageError: an :data:`OPTIONS` spec (an options file alone has no weights).
        """
        if self.kind == FILES:
            assert self.options_file is not None and self.weight_file is not None
            weights = _fetch(self.weight_file, download=download)
            return ModelFiles(self.name, _fetch(self.options_file, download=download), weights)
        if self.kind == DIRECTORY:
            assert self.path is not None
            return _directory_files(self.path, self.format)
        if self.kind == ZIP:
            assert self.path is not None
            return _zip_files(self.path, self.format)
        if self.kind == PUBLISHED:
            model = PUBLISHED_MODELS[self.name]
            return ModelFiles(
                self.name,
                _fetch(model.options_url, self.name, model.options_sha256, download),
                _fetch(model.weights_url, self.name, model.weights_sha256, download),
            )
        if self.kind == SHIPPED:
            assert self.path is not None
            return ModelFiles(self.name, self.path / OPTIONS_NAME, self.path / WEIGHTS_NAME)
        raise UsageError(f"{self.name}: an options file alone is not a model; it needs its weights")


def resolve_model(
    model: str | Path | None = DEFAULT_MODEL,
    options_file: str | Path | None = None,
    weight_file: str | Path | None = None,
    format: str | None = None,
) -> ModelFiles:
    """Find (downloading if needed) the files of a model: ``ModelSpec.parse(...).resolve()``.

    See :meth:`ModelSpec.parse` for the arguments and :meth:`ModelSpec.resolve` for the errors.
    """
    return ModelSpec.parse(model, options_file, weight_file, format).resolve()


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


def _fetch(url_or_path: str, model: str | None = None, sha256: str | None = None, download: bool = True) -> Path:
    """A local path as is, a URL through Flair's cache (see :func:`cached_location`); a file it
    downloads is checked against ``sha256`` when given (a mismatch is deleted and refused).
    ``download=False``: :class:`ModelNotDownloaded` for a URL not in the cache."""
    if "://" not in url_or_path:
        return require_file(url_or_path, "ELMo file")
    # Flair's get_from_cache returns a cached file as is, without a request: so do we, without Flair.
    location = cached_location(url_or_path, model)
    if location.is_file():
        return location
    if not download:
        raise ModelNotDownloaded(f"{url_or_path} is not in the cache ({location}) and downloads are off")
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
