"""The bidirectional LSTM stack of ELMo: layers 1..L of the biLM.

Each direction is a stack of LSTM cells with a projection of the cell output (``cell_dim`` ->
``projection_dim``), optional clipping of memory cells and projected outputs, and residual
connections between layers. The forward and backward stacks never see each other's outputs.

Both directions run in the same kernel calls: the backward direction reads every sentence
reversed within its own length, so "reversed sentence i, step t" lines up with "sentence i,
step t" and the two directions are one batched matrix multiply per time step. Rows are sorted
by length so that the rows still running at step t are a prefix of the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from flair_elmo_modes.bilm.options import ElmoOptions

# Rows (timesteps x batch) per input-projection matmul: large enough for an efficient GEMM,
# small enough that a 10,000-token sentence does not need a (10,000, 4 * cell_dim) buffer.
_INPUT_PROJECTION_ROWS = 2048


class LstmState(NamedTuple):
    """Recurrent state of the whole stack, rows in batch order.

    Attributes:
        hidden: ``(n_layers, 2, batch, projection_dim)``; dim 1 is [forward, backward].
        memory: ``(n_layers, 2, batch, cell_dim)``.
    """

    hidden: torch.Tensor
    memory: torch.Tensor


class BidirectionalLstm(nn.Module):
    """ELMo's two LSTM stacks with projection, clipping and skip connections.

    Parameters follow PyTorch's ``nn.LSTM`` names, with a leading direction dim of 2
    ([forward, backward]) and gates in the order (input, forget, cell, output):
    ``weight_ih_l{k}`` ``(2, 4 * cell_dim, input_dim)``, ``weight_hh_l{k}``
    ``(2, 4 * cell_dim, projection_dim)``, ``bias_l{k}`` ``(2, 4 * cell_dim)`` and
    ``weight_hr_l{k}`` ``(2, projection_dim, cell_dim)``.
    """

    def __init__(self, options: ElmoOptions) -> None:
        super().__init__()
        self.n_layers = options.n_layers
        self.cell_dim = options.cell_dim
        self.projection_dim = options.projection_dim
        self.cell_clip = options.cell_clip
        self.proj_clip = options.proj_clip
        self.use_skip_connections = options.use_skip_connections
        cell, proj = options.cell_dim, options.projection_dim
        for k in range(options.n_layers):
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(2, 4 * cell, proj)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(2, 4 * cell, proj)))
            self.register_parameter(f"bias_l{k}", nn.Parameter(torch.empty(2, 4 * cell)))
            self.register_parameter(f"weight_hr_l{k}", nn.Parameter(torch.empty(2, proj, cell)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(cell_dim), 1/sqrt(cell_dim)) as ``nn.LSTM``; forget-gate bias 1."""
        bound = self.cell_dim**-0.5
        for name, parameter in self.named_parameters():
            nn.init.uniform_(parameter, -bound, bound)
            if name.startswith("bias"):
                with torch.no_grad():
                    parameter[:, self.cell_dim : 2 * self.cell_dim] = 1.0

    def initial_state(self, batch: int, like: torch.Tensor) -> LstmState:
        """Zero state for ``batch`` rows on the device and dtype of ``like``."""
        shape = (self.n_layers, 2, batch)
        return LstmState(like.new_zeros(*shape, self.projection_dim), like.new_zeros(*shape, self.cell_dim))

    def forward(
        self, inputs: torch.Tensor, lengths: torch.Tensor, state: LstmState | None = None
    ) -> tuple[torch.Tensor, LstmState]:
        """Run both directions over a batch of sequences.

        Args:
            inputs: ``(batch, timesteps, projection_dim)`` token vectors; positions at or after
                a row's length are ignored.
            lengths: ``(batch,)`` int64 length of each row (may be 0).
            state: initial state, zeros when ``None``.

        Returns:
            ``(n_layers, batch, timesteps, 2 * projection_dim)`` outputs ([forward; backward]
            per layer, zeros after each row's length) and the final state. A row's final
            state is taken after its own last step; the backward direction ends at position 0.
        """
        batch, timesteps, _ = inputs.shape
        if state is None:
            state = self.initial_state(batch, inputs)
        lengths = lengths.to(inputs.device)
        sorted_lengths, order = lengths.sort(descending=True)
        steps = torch.arange(timesteps, device=inputs.device)
        # batch_sizes[t]: rows still running at step t (a prefix, since rows are sorted).
        batch_sizes = (sorted_lengths.unsqueeze(0) > steps.unsqueeze(1)).sum(dim=1).tolist()
        # reverse_index[t, b]: the position step t of the backward direction reads in row b.
        last = sorted_lengths.unsqueeze(0) - 1  # (1, batch)
        reverse_index = torch.where(steps.unsqueeze(1) <= last, last - steps.unsqueeze(1), steps.unsqueeze(1))

        forward_input = inputs.index_select(0, order).transpose(0, 1)  # (timesteps, batch, dim)
        backward_input = _gather_time(forward_input, reverse_index)
        layer_input = torch.stack([forward_input, backward_input])  # (2, timesteps, batch, dim)

        hidden = state.hidden.index_select(2, order)  # (n_layers, 2, batch, proj)
        memory = state.memory.index_select(2, order)
        outputs, final_hidden, final_memory = [], [], []
        for k in range(self.n_layers):
            output, h, c = self._run_layer(k, layer_input, batch_sizes, hidden[k], memory[k])
            if self.use_skip_connections and k > 0:
                output = output + layer_input
            outputs.append(output)
            final_hidden.append(h)
            final_memory.append(c)
            layer_input = output

        stacked = torch.stack(outputs)  # (n_layers, 2, timesteps, batch, proj)
        forward_out = stacked[:, 0]
        backward_out = _gather_time(stacked[:, 1], reverse_index)  # back to reading order
        restore = order.argsort()
        combined = torch.cat([forward_out, backward_out], dim=-1)  # (n_layers, timesteps, batch, 2 * proj)
        combined = combined.index_select(2, restore).transpose(1, 2)  # (n_layers, batch, timesteps, 2 * proj)
        final = LstmState(
            torch.stack(final_hidden).index_select(2, restore), torch.stack(final_memory).index_select(2, restore)
        )
        return combined, final

    def _run_layer(
        self,
        k: int,
        inputs: torch.Tensor,
        batch_sizes: list[int],
        hidden: torch.Tensor,
        memory: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One layer, both directions.

        Args:
            inputs: ``(2, timesteps, batch, input_dim)``, backward rows already reversed.
            batch_sizes: rows running at each step.
            hidden: ``(2, batch, projection_dim)`` initial hidden state.
            memory: ``(2, batch, cell_dim)`` initial memory.

        Returns:
            ``(2, timesteps, batch, projection_dim)`` outputs (zero where a row has ended) and
            the final hidden state and memory.
        """
        weight_ih = getattr(self, f"weight_ih_l{k}").transpose(1, 2)  # (2, input_dim, 4 * cell)
        weight_hh = getattr(self, f"weight_hh_l{k}").transpose(1, 2)  # (2, proj, 4 * cell)
        weight_hr = getattr(self, f"weight_hr_l{k}").transpose(1, 2)  # (2, cell, proj)
        bias = getattr(self, f"bias_l{k}").unsqueeze(1)  # (2, 1, 4 * cell)
        _, timesteps, batch, input_dim = inputs.shape
        cell = self.cell_dim
        chunk = max(1, _INPUT_PROJECTION_ROWS // max(batch, 1))
        outputs: list[torch.Tensor] = []
        for start in range(0, timesteps, chunk):
            block = inputs[:, start : start + chunk]  # (2, block_steps, batch, input_dim)
            block_steps = block.shape[1]
            projected = torch.baddbmm(bias, block.reshape(2, block_steps * batch, input_dim), weight_ih)
            projected = projected.view(2, block_steps, batch, 4 * cell)
            for t in range(block_steps):
                n = batch_sizes[start + t]
                if n == 0:
                    outputs.append(hidden.new_zeros(2, batch, self.projection_dim))
                    continue
                gates = torch.baddbmm(projected[:, t, :n], hidden[:, :n], weight_hh)  # (2, n, 4 * cell)
                input_forget = torch.sigmoid(gates[..., : 2 * cell])
                candidate = torch.tanh(gates[..., 2 * cell : 3 * cell])
                output_gate = torch.sigmoid(gates[..., 3 * cell :])
                new_memory = input_forget[..., :cell] * candidate + input_forget[..., cell:] * memory[:, :n]
                if self.cell_clip:
                    new_memory = new_memory.clamp(-self.cell_clip, self.cell_clip)
                new_hidden = torch.bmm(output_gate * torch.tanh(new_memory), weight_hr)  # (2, n, proj)
                if self.proj_clip:
                    new_hidden = new_hidden.clamp(-self.proj_clip, self.proj_clip)
                if n < batch:
                    # Ended rows keep their state; their output is zero.
                    outputs.append(nn.functional.pad(new_hidden, (0, 0, 0, batch - n)))
                    hidden = torch.cat([new_hidden, hidden[:, n:]], dim=1)
                    memory = torch.cat([new_memory, memory[:, n:]], dim=1)
                else:
                    outputs.append(new_hidden)
                    hidden, memory = new_hidden, new_memory
        return torch.stack(outputs, dim=1), hidden, memory


def _gather_time(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[..., index[t, b], b, :]`` for ``values`` of shape ``(..., timesteps, batch, dim)``."""
    expanded = index.unsqueeze(-1).expand(*values.shape[-3:])
    expanded = expanded.expand(*values.shape)
    return values.gather(-3, expanded)
