"""ELMo contextual word embeddings for Flair, on a native PyTorch biLM.

The names below are imported on first use (PEP 562 ``__getattr__``), so ``import flair_elmo_modes``
costs nothing and ``flair_elmo_modes.bilm``, ``ElmoEmbedder`` and the ``flair-elmo`` command line
never import Flair. ``ELMoEmbeddings`` is still registered with Flair as soon as Flair is imported,
before or after this package, so saved taggers load (see :mod:`flair_elmo_modes._flair_hook`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flair_elmo_modes._flair_hook import register_with_flair

if TYPE_CHECKING:
    from flair_elmo_modes.bilm import ElmoBiLm, ElmoFileError, ElmoOptions, load_bilm, save_bilm
    from flair_elmo_modes.catalogue import DEFAULT_MODEL, SHIPPED_MODEL
    from flair_elmo_modes.embedder import ElmoEmbedder
    from flair_elmo_modes.embedding_spec import EmbeddingSpec, build_embedder
    from flair_elmo_modes.embeddings import ELMoEmbeddings
    from flair_elmo_modes.errors import ElmoError, ModelDownloadError, UsageError
    from flair_elmo_modes.layers import ScalarMix
    from flair_elmo_modes.models import ModelSpec

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "SHIPPED_MODEL",
    "ELMoEmbeddings",
    "ElmoBiLm",
    "ElmoEmbedder",
    "ElmoError",
    "ElmoFileError",
    "ElmoOptions",
    "EmbeddingSpec",
    "ModelDownloadError",
    "ModelSpec",
    "ScalarMix",
    "UsageError",
    "__version__",
    "build_embedder",
    "load_bilm",
    "save_bilm",
]

#: Public name -> the module that defines it (imported when the name is first used).
_EXPORTS = {
    "DEFAULT_MODEL": "flair_elmo_modes.catalogue",
    "SHIPPED_MODEL": "flair_elmo_modes.catalogue",
    "ELMoEmbeddings": "flair_elmo_modes.embeddings",  # imports Flair
    "ElmoBiLm": "flair_elmo_modes.bilm.model",
    "ElmoEmbedder": "flair_elmo_modes.embedder",
    "ElmoError": "flair_elmo_modes.errors",
    "ElmoFileError": "flair_elmo_modes.bilm.errors",
    "ElmoOptions": "flair_elmo_modes.bilm.options",
    "EmbeddingSpec": "flair_elmo_modes.embedding_spec",
    "ModelDownloadError": "flair_elmo_modes.errors",
    "ModelSpec": "flair_elmo_modes.models",
    "UsageError": "flair_elmo_modes.errors",
    "build_embedder": "flair_elmo_modes.embedding_spec",
    "ScalarMix": "flair_elmo_modes.layers",
    "load_bilm": "flair_elmo_modes.bilm.hdf5",
    "save_bilm": "flair_elmo_modes.bilm.hdf5",
}

#: Subpackages and modules reachable as attributes (``flair_elmo_modes.cli.main``) without an import.
_SUBMODULES = frozenset(
    {
        "atomic",
        "bilm",
        "catalogue",
        "cli",
        "corpus",
        "embedder",
        "embedding_spec",
        "embeddings",
        "errors",
        "hdf5_output",
        "layer_cache",
        "layers",
        "models",
        "progress",
        "runner",
        "training",
    }
)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups do not come here again
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)


register_with_flair()
