"""AllenNLP's stateful LSTM behaviour, kept outside the (stateless) biLM."""

from __future__ import annotations

import torch

from flair_elmo_modes.bilm.lstm import LstmState


class CarriedState:
    """LSTM state carried per batch row from one call to the next, as AllenNLP's ``ElmoLstm``.

    Row i of a batch starts from the state row i of the previous batches left; rows never
    seen start from zeros. After a batch, its rows take the new final state; rows beyond the
    batch keep theirs, and so does a row whose new first-layer state sums to zero
    (AllenNLP's rule, applied separately to hidden state and memory).
    """

    def __init__(self) -> None:
        self.state: LstmState | None = None

    def reset(self) -> None:
        self.state = None

    def initial(self, batch: int) -> LstmState | None:
        """The starting state for ``batch`` rows (``None`` means zeros for every row)."""
        if self.state is None:
            return None
        stored = self.state.hidden.shape[2]
        if stored >= batch:
            return LstmState(*(part[:, :, :batch] for part in self.state))
        return LstmState(*(_pad_rows(part, batch) for part in self.state))

    def update(self, new: LstmState) -> None:
        """Keep the final state of a batch."""
        new = LstmState(*(part.detach() for part in new))
        if self.state is None:
            self.state = new
            return
        merged = []
        for old, fresh in zip(self.state, new, strict=True):
            rows = fresh.shape[2]
            updated = _pad_rows(old, rows) if old.shape[2] < rows else old.clone()
            # used: (1, 1, rows, 1); AllenNLP sums the first layer over both directions.
            used = fresh[0].transpose(0, 1).reshape(rows, -1).sum(dim=-1).ne(0).view(1, 1, rows, 1)
            updated[:, :, :rows] = torch.where(used, fresh, updated[:, :, :rows])
            merged.append(updated)
        self.state = LstmState(*merged)


def _pad_rows(part: torch.Tensor, rows: int) -> torch.Tensor:
    """``(n_layers, 2, stored, dim)`` -> ``(n_layers, 2, rows, dim)`` with zero rows appended."""
    return torch.nn.functional.pad(part, (0, 0, 0, rows - part.shape[2]))
