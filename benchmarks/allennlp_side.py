"""The AllenNLP 2.10.1 baseline: what allennlp 0.9's ``ElmoEmbedder.embed_batch`` did, states reset.

Imported only when allennlp is importable (the oracle venv built by
``../shared/tools/allennlp-oracle-venv.sh``, see README.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from allennlp.modules.elmo import _ElmoBiLm, batch_to_ids
    from allennlp.nn.util import remove_sentence_boundaries


class AllenNlpEmbedder:
    """``batch_to_ids`` + ``_ElmoBiLm`` (LSTM states reset before every batch) +
    ``remove_sentence_boundaries`` + one numpy array per sentence, under ``torch.no_grad``."""

    def __init__(self, options_file: Path, weight_file: Path) -> None:
        self.bilm = _ElmoBiLm(str(options_file), str(weight_file), requires_grad=False).eval()

    def embed_batch(self, batch: Sequence[Sequence[str]]) -> list[np.ndarray]:
        character_ids = batch_to_ids([list(sentence) for sentence in batch])
        with torch.no_grad():
            self.bilm._elmo_lstm.reset_states()
            output = self.bilm(character_ids)
            without_boundaries = [remove_sentence_boundaries(layer, output["mask"]) for layer in output["activations"]]
            activations = torch.cat([layer.unsqueeze(1) for layer, _ in without_boundaries], dim=1)
            mask = without_boundaries[0][1]
        lengths = mask.sum(dim=1).tolist()
        return [activations[i, :, :length].numpy() for i, length in enumerate(lengths)]
