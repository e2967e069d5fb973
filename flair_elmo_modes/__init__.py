"""ELMo contextual word embeddings for Flair, on a native PyTorch biLM."""

from flair_elmo_modes.bilm import ElmoBiLm, ElmoFileError, ElmoOptions, load_bilm, save_bilm
from flair_elmo_modes.embedder import ElmoEmbedder

__version__ = "0.1.0"

__all__ = ["ElmoBiLm", "ElmoEmbedder", "ElmoFileError", "ElmoOptions", "__version__", "load_bilm", "save_bilm"]
