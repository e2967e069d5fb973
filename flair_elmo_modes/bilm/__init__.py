"""The ELMo biLM in PyTorch: character ids -> (L + 1) layers. Independent of Flair."""

from flair_elmo_modes.bilm.characters import batch_to_ids
from flair_elmo_modes.bilm.errors import ElmoFileError
from flair_elmo_modes.bilm.hdf5 import load_bilm, save_bilm
from flair_elmo_modes.bilm.lstm import LstmState
from flair_elmo_modes.bilm.model import BiLmOutput, ElmoBiLm
from flair_elmo_modes.bilm.options import ElmoOptions

__all__ = [
    "BiLmOutput",
    "ElmoBiLm",
    "ElmoFileError",
    "ElmoOptions",
    "LstmState",
    "batch_to_ids",
    "load_bilm",
    "save_bilm",
]
