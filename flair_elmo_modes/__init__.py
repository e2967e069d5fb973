"""ELMo contextual word embeddings for Flair, on a native PyTorch biLM."""

from flair_elmo_modes.bilm import ElmoBiLm, ElmoFileError, ElmoOptions, load_bilm, save_bilm
from flair_elmo_modes.embedder import ElmoEmbedder
from flair_elmo_modes.embeddings import ELMoEmbeddings
from flair_elmo_modes.layers import ScalarMix
from flair_elmo_modes.models import SHIPPED_MODEL, ModelDownloadError

__version__ = "0.1.0"

__all__ = [
    "SHIPPED_MODEL",
    "ELMoEmbeddings",
    "ElmoBiLm",
    "ElmoEmbedder",
    "ElmoFileError",
    "ElmoOptions",
    "ModelDownloadError",
    "ScalarMix",
    "__version__",
    "load_bilm",
    "save_bilm",
]
