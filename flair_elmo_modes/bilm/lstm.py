"""The bidirectional LSTM stack of ELMo: layers 1..L of the biLM.

Each direction is a stack of LSTM cells with a projection of the cell output (``cell_dim`` ->
``projection_dim``), optional clipping of memory cells and projected outputs, and residual
connections between layers. The forward and backward stacks never see each other's outputs.

Both directions run in the same kernel calls: the backward direction reads every sentence
reversed within its own length, so "reversed sentence i, step t" lines up with "sentence i,
step t" and the two directions share every elementwise operation of a time step (and, on the
``bmm`` path, its matrix multiplies). Rows are sorted by length so that the rows still running at
step t are a prefix of the batch, and the stack works on packed sequences (as
``torch.nn.utils.rnn.PackedSequence``): step t's rows follow step t - 1's, so no arithmetic is
spent on padding, and the input projections of many steps are one matrix multiply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from flair_elmo_modes.bilm import onednn
from flair_elmo_modes.bilm.options import ElmoOptions

# Packed rows per input-projection matmul: large enough for an efficient GEMM, small enough
# that a 10,000-token sentence does not need a (2, 10,000, 4 * cell_dim) buffer.
INPUT_PROJECTION_ROWS = 512


class LstmState(NamedTuple):
    """Recurrent state of the whole stack, rows in batch order.

    Attributes:
        hidden: ``(n_layers, 2, batch, projection_dim)``; dim 1 is [forward, backward].
        memory: ``(n_layers, 2, batch, cell_dim)``.
    """

    hidden: torch.Tensor
    memory: torch.Tensor


class PackedLayout(NamedTuple):
    """Where the rows of a packed batch come from; rows are sorted by decreasing length.

    Packed row ``offsets[t] + j`` holds step ``t`` of sorted row ``j`` (``j < batch_sizes[t]``).

    Attributes:
        batch_sizes: rows running at each step (only steps with at least one row).
        offsets: first packed row of each step, plus the total number of packed rows at the end.
        forward_index: ``(packed,)`` index into the ``(batch * timesteps)`` flattened inputs that
            the forward direction reads at each packed row.
        backward_index: ``(packed,)`` the same for the backward direction (each row reversed
            within its length).
        last_rows: ``(running,)`` packed row of the last step of each sorted row with length > 0.
        blocks: ``(first_step, end_step)`` ranges of at most ``block_rows`` packed rows (or one
            step) whose input projections are computed together.
    """

    batch_sizes: list[int]
    offsets: list[int]
    forward_index: torch.Tensor
    backward_index: torch.Tensor
    last_rows: torch.Tensor
    blocks: list[tuple[int, int]]

    @classmethod
    def build(
        cls, sorted_lengths: torch.Tensor, order: torch.Tensor, timesteps: int, block_rows: int = INPUT_PROJECTION_ROWS
    ) -> PackedLayout:
        """Layout of rows ``order`` (sorted by decreasing length) of a ``(batch, timesteps)`` batch."""
        device = sorted_lengths.device
        steps = torch.arange(int(sorted_lengths[0]) if len(sorted_lengths) else 0, device=device)
        running = steps.unsqueeze(1) < sorted_lengths.unsqueeze(0)  # (steps, batch)
        batch_sizes = running.sum(dim=1).tolist()
        offsets = [0]
        for n in batch_sizes:
            offsets.append(offsets[-1] + n)
        step, row = running.nonzero(as_tuple=True)  # (packed,) each, step-major: the packed order
        length = sorted_lengths[row]
        source = order[row] * timesteps
        n_running = int((sorted_lengths > 0).sum())
        last_step = sorted_lengths[:n_running] - 1
        last_rows = torch.tensor(offsets[:-1], device=device, dtype=torch.long)[last_step] + torch.arange(
            n_running, device=device
        )
        blocks, first = [], 0
        for t in range(1, len(batch_sizes) + 1):
            if t == len(batch_sizes) or offsets[t + 1] - offsets[first] > block_rows:
                blocks.append((first, t))
                first = t
        return cls(batch_sizes, offsets, source + step, source + length - 1 - step, last_rows, blocks)


class BidirectionalLstm(nn.Module):
    """ELMo's two LSTM stacks with projection, clipping and skip connections.

    Parameters follow PyTorch's ``nn.LSTM`` names, with a leading direction dim of 2
    ([forward, backward]) and gates in the order (input, forget, cell, output):
    ``weight_ih_l{k}`` ``(2, 4 * cell_dim, input_dim)``, ``weight_hh_l{k}``
    ``(2, 4 * cell_dim, projection_dim)``, ``bias_l{k}`` ``(2, 4 * cell_dim)`` and
    ``weight_hr_l{k}`` ``(2, projection_dim, cell_dim)``.

    With autograd the steps run out of place (:meth:`_run_layer`). Without (``torch.no_grad``,
    ``torch.inference_mode``, or nothing requiring a gradient) each time step runs in place in
    preallocated buffers, and for float32 on an x86 CPU every matrix multiply uses oneDNN's
    pre-packed weights (:mod:`flair_elmo_modes.bilm.onednn`; the packed copies are kept in
    ``packed_weights`` until a weight changes) and the cell computes its tanh from sigmoids
    (:meth:`_cell_from_sigmoids`). All paths compute the same values, up to float32 rounding.

    Attributes:
        input_projection_rows: packed rows per input-projection matmul (a memory bound; see
            ``INPUT_PROJECTION_ROWS``).
    """

    input_projection_rows: int = INPUT_PROJECTION_ROWS

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
        self.packed_weights = onednn.PackedWeights()

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
        batch, timesteps, input_dim = inputs.shape
        if state is None:
            state = self.initial_state(batch, inputs)
        sorted_lengths, order = lengths.to(inputs.device).sort(descending=True)
        layout = PackedLayout.build(sorted_lengths, order, timesteps, self.input_projection_rows)
        flat = inputs.reshape(batch * timesteps, input_dim)
        # (2, packed, input_dim): [forward; backward] inputs of every running step
        layer_input = torch.stack(
            [flat.index_select(0, layout.forward_index), flat.index_select(0, layout.backward_index)]
        )

        hidden = state.hidden.index_select(2, order)  # (n_layers, 2, batch, proj), sorted rows
        memory = state.memory.index_select(2, order)
        grad_enabled = torch.is_grad_enabled()
        grad = grad_enabled and (inputs.requires_grad or state.hidden.requires_grad or state.memory.requires_grad)
        use_onednn = onednn.usable(inputs)
        if not use_onednn:
            self.packed_weights.clear()  # e.g. moved to float64 or to a GPU: free the packed copies
        outputs, final_hidden, final_memory = [], [], []
        for k in range(self.n_layers):
            weights = self._layer_weights(k)
            if grad or (grad_enabled and any(w.requires_grad for w in weights)):
                output, c = self._run_layer(layer_input, layout, hidden[k], memory[k], *weights)
            elif use_onednn:
                output, c = self._run_layer_onednn(k, layer_input, layout, hidden[k], memory[k])
            else:
                output, c = self._run_layer_in_place(layer_input, layout, hidden[k], memory[k], *weights)
            # The final hidden state is the cell's own output, before the skip connection.
            final_hidden.append(
                torch.cat([output.index_select(1, layout.last_rows), hidden[k, :, len(layout.last_rows) :]], dim=1)
            )
            final_memory.append(c)
            if self.use_skip_connections and k > 0:
                output = output + layer_input
            outputs.append(output)
            layer_input = output
            grad = grad or output.requires_grad

        stacked = torch.stack(outputs)  # (n_layers, 2, packed, proj)
        unpacked = stacked.new_zeros(self.n_layers, batch * timesteps, 2, self.projection_dim)
        unpacked[:, layout.forward_index, 0] = stacked[:, 0]
        unpacked[:, layout.backward_index, 1] = stacked[:, 1]  # back to reading order
        combined = unpacked.view(self.n_layers, batch, timesteps, 2 * self.projection_dim)
        restore = order.argsort()
        final = LstmState(
            torch.stack(final_hidden).index_select(2, restore), torch.stack(final_memory).index_select(2, restore)
        )
        return combined, final

    def _layer_weights(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer ``k``'s weights as right-hand sides of ``bmm``: ``(2, input_dim, 4 * cell)`` input,
        ``(2, proj, 4 * cell)`` recurrent, ``(2, cell, proj)`` projection and ``(2, 1, 4 * cell)`` bias."""
        return (
            getattr(self, f"weight_ih_l{k}").transpose(1, 2),
            getattr(self, f"weight_hh_l{k}").transpose(1, 2),
            getattr(self, f"weight_hr_l{k}").transpose(1, 2),
            getattr(self, f"bias_l{k}").unsqueeze(1),
        )

    def _run_layer(
        self,
        inputs: torch.Tensor,
        layout: PackedLayout,
        hidden: torch.Tensor,
        memory: torch.Tensor,
        weight_ih: torch.Tensor,
        weight_hh: torch.Tensor,
        weight_hr: torch.Tensor,
        bias: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer, both directions, out of place (autograd).

        Args:
            inputs: ``(2, packed, input_dim)``, backward rows already reversed.
            layout: the packing of ``inputs``.
            hidden: ``(2, batch, projection_dim)`` initial hidden state, sorted rows.
            memory: ``(2, batch, cell_dim)`` initial memory, sorted rows.
            weight_ih, weight_hh, weight_hr, bias: as from :meth:`_layer_weights`.

        Returns:
            ``(2, packed, projection_dim)`` outputs and ``(2, batch, cell_dim)`` final memory.
        """
        cell = self.cell_dim
        outputs: list[torch.Tensor] = []
        ended: list[torch.Tensor] = []  # memory of rows that stopped running, latest last
        h, c = hidden, memory
        for first, end in layout.blocks:
            start = layout.offsets[first]
            block = inputs[:, start : layout.offsets[end]]  # (2, block_rows, input_dim)
            projected = torch.baddbmm(bias, block, weight_ih)  # (2, block_rows, 4 * cell)
            for t in range(first, end):
                n, row = layout.batch_sizes[t], layout.offsets[t] - start
                if n < c.shape[1]:
                    ended.append(c[:, n:])
                gates = torch.baddbmm(projected[:, row : row + n], h[:, :n], weight_hh)  # (2, n, 4 * cell)
                input_forget = torch.sigmoid(gates[..., : 2 * cell])
                candidate = torch.tanh(gates[..., 2 * cell : 3 * cell])
                output_gate = torch.sigmoid(gates[..., 3 * cell :])
                c = input_forget[..., :cell] * candidate + input_forget[..., cell:] * c[:, :n]
                if self.cell_clip:
                    c = c.clamp(-self.cell_clip, self.cell_clip)
                h = torch.bmm(output_gate * torch.tanh(c), weight_hr)  # (2, n, proj)
                if self.proj_clip:
                    h = h.clamp(-self.proj_clip, self.proj_clip)
                outputs.append(h)
        final_memory = torch.cat([c, *reversed(ended)], dim=1)  # (2, batch, cell), sorted rows
        if not outputs:
            return inputs.new_zeros(2, 0, self.projection_dim), final_memory
        return torch.cat(outputs, dim=1), final_memory

    def _run_layer_in_place(
        self,
        inputs: torch.Tensor,
        layout: PackedLayout,
        hidden: torch.Tensor,
        memory: torch.Tensor,
        weight_ih: torch.Tensor,
        weight_hh: torch.Tensor,
        weight_hr: torch.Tensor,
        bias: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_run_layer` without autograd: each step writes into preallocated buffers.

        The gates of step t are computed in their slot of the block's input projections, the
        memory of running rows is updated in place (rows that stopped keep theirs), and the
        projected output is written straight into its packed row, which is where the next step
        reads its hidden state from.
        """
        output = inputs.new_empty(2, layout.offsets[-1], self.projection_dim)
        memory = memory.clone()
        cell_outputs = memory.new_empty(memory.shape)  # (2, batch, cell)
        for first, end in layout.blocks:
            start = layout.offsets[first]
            projected = torch.baddbmm(bias, inputs[:, start : layout.offsets[end]], weight_ih)  # (2, rows, 4 * cell)
            for t in range(first, end):
                n, row = layout.batch_sizes[t], layout.offsets[t]
                previous = hidden[:, :n] if t == 0 else output[:, layout.offsets[t - 1] : layout.offsets[t - 1] + n]
                gates = projected[:, row - start : row - start + n].baddbmm_(previous, weight_hh)  # (2, n, 4 * cell)
                cell_output = self._cell_in_place(gates, memory[:, :n], cell_outputs[:, :n])  # (2, n, cell)
                self._clip_in_place(torch.bmm(cell_output, weight_hr, out=output[:, row : row + n]))
        return output, memory

    def _run_layer_onednn(
        self, k: int, inputs: torch.Tensor, layout: PackedLayout, hidden: torch.Tensor, memory: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_run_layer_in_place` for layer ``k`` with oneDNN's pre-packed weights, one
        direction per product (see :mod:`flair_elmo_modes.bilm.onednn`).

        The cell takes its tanh from sigmoids (:meth:`_cell_from_sigmoids`): the candidate rows of
        the gate pre-activations are doubled, and so is the output projection, both exactly.
        """
        cell = self.cell_dim
        candidate_rows = slice(2 * cell, 3 * cell)
        hh = self._packed(f"weight_hh_l{k}", lambda w: _doubled_rows(w, candidate_rows))
        hr = self._packed(f"weight_hr_l{k}", lambda w: w * 2)
        ih = self._packed(f"weight_ih_l{k}")
        bias = getattr(self, f"bias_l{k}")
        output = inputs.new_empty(2, layout.offsets[-1], self.projection_dim)
        memory = memory.clone()
        cell_outputs = memory.new_empty(memory.shape)  # (2, batch, cell)
        for first, end in layout.blocks:
            start, stop = layout.offsets[first], layout.offsets[end]
            projected = [onednn.linear(inputs[d, start:stop], ih[d], bias[d]) for d in (0, 1)]  # (rows, 4 * cell)
            for direction in projected:
                direction[:, candidate_rows].mul_(2)
            for t in range(first, end):
                n, row = layout.batch_sizes[t], layout.offsets[t]
                previous = hidden[:, :n] if t == 0 else output[:, layout.offsets[t - 1] : layout.offsets[t - 1] + n]
                local = row - start
                gates = torch.stack(
                    [onednn.linear(previous[d], hh[d], add=projected[d][local : local + n], step=True) for d in (0, 1)]
                )  # (2, n, 4 * cell)
                cell_output = self._cell_from_sigmoids(gates, memory[:, :n], cell_outputs[:, :n])  # (2, n, cell)
                h = torch.stack(
                    [onednn.linear(cell_output[d], hr[d], step=True) for d in (0, 1)], out=output[:, row : row + n]
                )
                self._clip_in_place(h)
        return output, memory

    def _cell_from_sigmoids(self, gates: torch.Tensor, memory: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """:meth:`_cell_in_place` with ``tanh(x) = 2 * sigmoid(2 * x) - 1`` (torch's CPU sigmoid is
        about 5x faster than its tanh; the two agree to about 1e-7).

        Args:
            gates: ``(2, n, 4 * cell)`` pre-activations with the candidate block already doubled;
                overwritten.
            memory: ``(2, n, cell)``, updated in place.
            out: ``(2, n, cell)``, receives ``output_gate * tanh(memory) / 2`` (the caller's
                output projection is doubled).
        """
        input_gate, forget_gate, candidate, output_gate = gates.sigmoid_().split(self.cell_dim, dim=-1)
        candidate.sub_(0.5).mul_(input_gate)  # input_gate * tanh(x) / 2
        memory.mul_(forget_gate).add_(candidate, alpha=2)
        if self.cell_clip:
            memory.clamp_(-self.cell_clip, self.cell_clip)
        return torch.mul(memory, 2, out=out).sigmoid_().sub_(0.5).mul_(output_gate)

    def _cell_in_place(self, gates: torch.Tensor, memory: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """One step of the cell on ``(2, n, 4 * cell)`` gate pre-activations, in place.

        Overwrites ``gates``, updates ``memory`` ``(2, n, cell)`` and writes
        ``output_gate * tanh(memory)`` into ``out`` ``(2, n, cell)``. The arithmetic (and its
        rounding) is :meth:`_run_layer`'s.
        """
        cell = self.cell_dim
        input_gate, forget_gate = gates[..., :cell], gates[..., cell : 2 * cell]
        candidate, output_gate = gates[..., 2 * cell : 3 * cell], gates[..., 3 * cell :]
        gates[..., : 2 * cell].sigmoid_()
        candidate.tanh_()
        output_gate.sigmoid_()
        candidate.mul_(input_gate)
        memory.mul_(forget_gate).add_(candidate)
        if self.cell_clip:
            memory.clamp_(-self.cell_clip, self.cell_clip)
        return torch.tanh(memory, out=out).mul_(output_gate)

    def _clip_in_place(self, hidden: torch.Tensor) -> None:
        if self.proj_clip:
            hidden.clamp_(-self.proj_clip, self.proj_clip)

    def _packed(
        self, name: str, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both directions of parameter ``name`` (``(2, out, in)``), optionally transformed, pre-packed
        for oneDNN. Cached per name and transform: each call site passes the same kind of transform."""
        weight = getattr(self, name)
        key = name if transform is None else f"{name}:transformed"
        make = transform or (lambda w: w)
        return (
            self.packed_weights.get(f"{key}.0", [weight], lambda: make(weight[0])),
            self.packed_weights.get(f"{key}.1", [weight], lambda: make(weight[1])),
        )


def _doubled_rows(weight: torch.Tensor, rows: slice) -> torch.Tensor:
    """A copy of ``weight`` with ``rows`` multiplied by 2 (exact in floating point)."""
    doubled = weight.clone()
    doubled[rows] *= 2
    return doubled
