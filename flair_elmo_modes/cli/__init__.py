"""The ``flair-elmo`` command line: ``embed``, ``embed-corpus``, ``info``, ``demo`` and ``train``.

This package is the only part of flair_elmo_modes that reads the environment or prints.
"""

from flair_elmo_modes.cli.main import main

__all__ = ["main"]
