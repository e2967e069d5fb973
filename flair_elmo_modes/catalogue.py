"""The models this package knows by name: AllenNLP's published ones and the one shipped inside it.

Each published model's record holds its download URLs, the SHA-256 its files are checked
against after a download, and its architecture (:class:`~flair_elmo_modes.bilm.options.ElmoOptions`),
so that ``flair-elmo info``, the benchmarks and the trainer's help describe a model without
downloading it. Which files a *name* means is decided by :class:`~flair_elmo_modes.models.ModelSpec`,
which reads this catalogue. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flair_elmo_modes.bilm.options import ElmoOptions

_S3 = "https://s3-us-west-2.amazonaws.com/allennlp/models/elmo"
_ORIGINAL = "https://allennlp.s3.amazonaws.com/models/elmo/2x4096_512_2048cnn_2xhighway"

#: The character CNN of every published model (bilm-tf's ``char_cnn``: [width, count] per filter).
_PUBLISHED_FILTERS = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024))


def _published_options(cell_dim: int, projection_dim: int, n_highway: int) -> ElmoOptions:
    """The options.json of a published English model: they differ only in these three numbers
    (as their names say, ``2x{cell_dim}_{projection_dim}_2048cnn_{n_highway}xhighway``)."""
    return ElmoOptions(
        char_embedding_dim=16,
        filters=_PUBLISHED_FILTERS,
        n_highway=n_highway,
        activation="relu",
        n_characters=262,
        max_characters_per_token=50,
        cell_dim=cell_dim,
        projection_dim=projection_dim,
        n_layers=2,
        cell_clip=3.0,
        proj_clip=3.0,
        use_skip_connections=True,
    )


@dataclass(frozen=True)
class PublishedModel:
    """One of AllenNLP's published models.

    Attributes:
        name: the name users give (``"original"``).
        options_url: where its ``options.json`` is downloaded from (the URLs Flair's legacy
            ``ELMoEmbeddings`` uses).
        weights_url: where its ``weights.hdf5`` is.
        options: its architecture; None where this release does not know it (``pt``: read from
            its options file once downloaded).
        options_sha256: SHA-256 its options file is checked against right after a download;
            None: no check.
        weights_sha256: the same for the weights.
    """

    name: str
    options_url: str
    weights_url: str
    options: ElmoOptions | None
    options_sha256: str | None = None
    weights_sha256: str | None = None

    @property
    def urls(self) -> tuple[str, str]:
        """``(options_url, weights_url)``."""
        return self.options_url, self.weights_url


def _published(
    name: str, folder: str, options_name: str, weights_name: str, options: ElmoOptions | None
) -> PublishedModel:
    return PublishedModel(name, f"{folder}/{options_name}", f"{folder}/{weights_name}", options)


_ORIGINAL_OPTIONS = _published_options(4096, 512, 2)

#: AllenNLP's published models by name. Their SHA-256 are unknown to this release (it was built
#: without network access), so None: fill them in from a trusted download to have every later
#: download verified.
PUBLISHED_MODELS: dict[str, PublishedModel] = {
    model.name: model
    for model in (
        _published(
            "small",
            f"{_S3}/2x1024_128_2048cnn_1xhighway",
            "elmo_2x1024_128_2048cnn_1xhighway_options.json",
            "elmo_2x1024_128_2048cnn_1xhighway_weights.hdf5",
            _published_options(1024, 128, 1),
        ),
        _published(
            "medium",
            f"{_S3}/2x2048_256_2048cnn_1xhighway",
            "elmo_2x2048_256_2048cnn_1xhighway_options.json",
            "elmo_2x2048_256_2048cnn_1xhighway_weights.hdf5",
            _published_options(2048, 256, 1),
        ),
        _published(
            "original",
            _ORIGINAL,
            "elmo_2x4096_512_2048cnn_2xhighway_options.json",
            "elmo_2x4096_512_2048cnn_2xhighway_weights.hdf5",
            _ORIGINAL_OPTIONS,
        ),
        _published(
            "original5.5B",
            f"{_S3}/2x4096_512_2048cnn_2xhighway_5.5B",
            "elmo_2x4096_512_2048cnn_2xhighway_5.5B_options.json",
            "elmo_2x4096_512_2048cnn_2xhighway_5.5B_weights.hdf5",
            _ORIGINAL_OPTIONS,
        ),
        _published("pt", f"{_S3}/contributed/pt", "elmo_pt_options.json", "elmo_pt_weights.hdf5", None),
        _published(
            "pubmed",
            f"{_S3}/contributed/pubmed",
            "elmo_2x4096_512_2048cnn_2xhighway_options.json",
            "elmo_2x4096_512_2048cnn_2xhighway_weights_PubMed_only.hdf5",
            _ORIGINAL_OPTIONS,
        ),
    )
}

#: Other names Flair's legacy class accepts.
ALIASES = {"large": "original5.5B", "5.5B": "original5.5B", "portuguese": "pt"}

#: The model trained by ``flair-elmo train`` and shipped inside this package (the demo's, offline).
SHIPPED_MODEL = "en-tiny"
#: Where shipped models live: one directory each, with ``options.json`` and ``weights.hdf5``.
SHIPPED_DIR = Path(__file__).parent / "models"

#: The model used when none is named, decided once for ``ELMoEmbeddings``, ``ElmoEmbedder``
#: and ``flair-elmo embed``/``info``: AllenNLP's (its ``DEFAULT_OPTIONS_FILE``/``DEFAULT_WEIGHT_FILE``)
#: and Flair's default, downloaded on first use.
DEFAULT_MODEL = "original"


def published_model(name: str) -> PublishedModel | None:
    """The published model called ``name`` (or one of its :data:`ALIASES`); None if there is none."""
    return PUBLISHED_MODELS.get(ALIASES.get(name, name))


def shipped_models() -> list[str]:
    """Names of the models inside this package."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(path.name for path in SHIPPED_DIR.iterdir() if (path / "options.json").is_file())


def available_models() -> list[str]:
    """Every model name :class:`~flair_elmo_modes.models.ModelSpec` accepts besides local paths."""
    return shipped_models() + list(PUBLISHED_MODELS) + list(ALIASES)


def architecture_name(options: ElmoOptions) -> str:
    """bilm-tf's name of an architecture, as in the published file names: ``2x4096_512_2048cnn_2xhighway``
    = 2 LSTM layers of 4096 cells, projection 512, 2048 CNN channels, 2 highway layers."""
    o = options
    return f"{o.n_layers}x{o.cell_dim}_{o.projection_dim}_{o.n_filters}cnn_{o.n_highway}xhighway"
