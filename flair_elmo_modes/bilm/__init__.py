"""The ELMo biLM in PyTorch: character ids -> (L + 1) layers. Independent of Flair.

The names below are imported on first use (PEP 562 ``__getattr__``): ``flair_elmo_modes.bilm.errors``
and ``.options`` then need neither torch nor h5py, so the command line can parse its arguments and
report errors quickly. No module of this package imports Flair, and only ``hdf5.py`` imports h5py
(both checked by ``tests/bilm/test_dependencies.py``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Public name -> the module that defines it (imported when the name is first used).
_EXPORTS = {
    "BiLmOutput": "flair_elmo_modes.bilm.model",
    "ElmoBiLm": "flair_elmo_modes.bilm.model",
    "ElmoFileError": "flair_elmo_modes.bilm.errors",
    "ElmoOptions": "flair_elmo_modes.bilm.options",
    "LstmState": "flair_elmo_modes.bilm.lstm",
    "batch_to_ids": "flair_elmo_modes.bilm.characters",
    "load_bilm": "flair_elmo_modes.bilm.hdf5",
    "save_bilm": "flair_elmo_modes.bilm.hdf5",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups do not come here again
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
