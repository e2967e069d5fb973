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

One step loop (:meth:`BidirectionalLstm._run_layer`) serves every path; what a step computes is a
kernel object, chosen once per forward and layer: the plain step
(:class:`~flair_elmo_modes.bilm.lstm_cell.TorchKernel`, in ``lstm_cell.py``) for autograd and with
the fast paths off, else one of the inference kernels of :mod:`flair_elmo_modes.bilm.fast.kernels`
(see :func:`~flair_elmo_modes.bilm.fast.kernel_plan.choose_kernel`). A kernel sees the layer as a
value, :class:`~flair_elmo_modes.bilm.lstm_cell.LayerWeights` (:meth:`BidirectionalLstm.layer`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from flair_elmo_modes.bilm.fast.derived import DerivedTensors, apply_and_drop
from flair_elmo_modes.bilm.fast.kernel_plan import choose_kernel
from flair_elmo_modes.bilm.lstm_cell import Kernel, LayerWeights
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

    Every forward runs :meth:`_run_layer` with, per layer, the kernel
    :func:`~flair_elmo_modes.bilm.fast.kernel_plan.choose_kernel` picks (the plain out-of-place step
    for autograd or with the fast paths off; else a kernel measured fastest here, or the fixed rule's); all
    kernels compute the same steps, their values differing by float32 rounding (or by the bf16/fp16
    rounding of the products under a reduced precision). Weight copies a kernel derives (packed
    layouts, bf16 copies) live in ``derived`` and are rebuilt when a weight changes
    (:mod:`flair_elmo_modes.bilm.fast.derived`).

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
        self.derived = DerivedTensors()

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        return apply_and_drop(self, lambda: super(BidirectionalLstm, self)._apply(fn, recurse), self.derived.clear)

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(cell_dim), 1/sqrt(cell_dim)) as ``nn.LSTM``; forget-gate bias 1."""
        bound = self.cell_dim**-0.5
        for name, parameter in self.named_parameters():
            nn.init.uniform_(parameter, -bound, bound)
            if name.startswith("bias"):
                with torch.no_grad():
                    parameter[:, self.cell_dim : 2 * self.cell_dim] = 1.0

    def layer(self, k: int) -> LayerWeights:
        """Layer ``k`` as its kernels see it: its parameters (the tensors themselves), sizes and clip
        values, and this stack's ``derived``."""
        return LayerWeights(
            index=k,
            weight_ih=getattr(self, f"weight_ih_l{k}"),
            weight_hh=getattr(self, f"weight_hh_l{k}"),
            bias=getattr(self, f"bias_l{k}"),
            weight_hr=getattr(self, f"weight_hr_l{k}"),
            cell_dim=self.cell_dim,
            projection_dim=self.projection_dim,
            cell_clip=self.cell_clip,
            proj_clip=self.proj_clip,
            derived=self.derived,
        )

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
        grad = torch.is_grad_enabled() and (
            inputs.requires_grad or state.hidden.requires_grad or state.memory.requires_grad
        )
        outputs, final_hidden, final_memory = [], [], []
        for k in range(self.n_layers):
            weights = self.layer(k)
            grad = grad or (torch.is_grad_enabled() and any(p.requires_grad for p in weights.parameters()))
            kernel = choose_kernel(weights, layer_input, batch, grad, self.input_projection_rows)
            output, c = self._run_layer(kernel, layer_input, layout, hidden[k], memory[k])
            # The final hidden state is the cell's own output, before the skip connection.
            final_hidden.append(
                torch.cat([output.index_select(1, layout.last_rows), hidden[k, :, len(layout.last_rows) :]], dim=1)
            )
            final_memory.append(c)
            if self.use_skip_connections and k > 0:
                output = output + layer_input
            outputs.append(output)
            layer_input = output

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

    def _run_layer(
        self, kernel: Kernel, inputs: torch.Tensor, layout: PackedLayout, hidden: torch.Tensor, memory: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer, both directions: the one step loop.

        Args:
            kernel: computes the input projections of a block and each step.
            inputs: ``(2, packed, input_dim)``, backward rows already reversed.
            layout: the packing of ``inputs``.
            hidden: ``(2, batch, projection_dim)`` initial hidden state, sorted rows.
            memory: ``(2, batch, cell_dim)`` initial memory, sorted rows.

        Returns:
            ``(2, packed, projection_dim)`` outputs and ``(2, batch, cell_dim)`` final memory.
        """
        # In place, steps write their hidden state straight into its packed row of `output`,
        # where the next step reads it, and update `memory` (a copy) row-prefix by row-prefix.
        output = inputs.new_empty(2, layout.offsets[-1], self.projection_dim) if kernel.in_place else None
        steps: list[torch.Tensor] = []  # out of place: each step's hidden state
        ended: list[torch.Tensor] = []  # memory of rows that stopped running, latest last
        h, c = hidden, memory.clone() if kernel.in_place else memory
        for first, end in layout.blocks:
            start = layout.offsets[first]
            projected = kernel.project(inputs[:, start : layout.offsets[end]])  # (2, block_rows, 4 * cell)
            for t in range(first, end):
                n, row = layout.batch_sizes[t], layout.offsets[t]
                if n < c.shape[1]:
                    ended.append(c[:, n:])
                    c = c[:, :n]
                out = None if output is None else output[:, row : row + n]
                h, c = kernel.step(projected[:, row - start : row - start + n], h[:, :n], c, out)
                if output is None:
                    steps.append(h)
        final_memory = torch.cat([c, *reversed(ended)], dim=1)  # (2, batch, cell), sorted rows
        if output is not None:
            return output, final_memory
        if not steps:
            return inputs.new_zeros(2, 0, self.projection_dim), final_memory
        return torch.cat(steps, dim=1), final_memory
