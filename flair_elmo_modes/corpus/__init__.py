"""Embed a corpus on a Ray cluster: one ``flair-elmo embed`` HDF5 file per text shard, resumable.

:func:`embed_corpus` (and ``flair-elmo embed-corpus``) turns shards of text (files,
directories, globs; one whitespace-tokenized sentence per line) into ``OUTPUT_DIR/<stem>.hdf5``
files in the layout of ``flair-elmo embed`` plus ``OUTPUT_DIR/manifest.json``. Ray Data runs
the shards on a pool of actors, each holding the biLM; a rerun skips the shards the manifest
records as complete. Needs the extra ``flair-elmo-modes[ray]``; importing this package does
not import Ray (only running a job does).
"""

from __future__ import annotations

from flair_elmo_modes.corpus.job import CorpusSummary, ShardsFailed, embed_corpus
from flair_elmo_modes.corpus.manifest import MANIFEST_NAME
from flair_elmo_modes.corpus.settings import EmbedSettings

__all__ = ["MANIFEST_NAME", "CorpusSummary", "EmbedSettings", "ShardsFailed", "embed_corpus"]
