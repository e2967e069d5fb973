"""What the biLM's tests share: sentences with every kind of token, float32 copies, skip marks."""

from __future__ import annotations

import copy

import pytest
import torch

from flair_elmo_modes.bilm.fast import mkl, onednn

TOKENS = [
    ["a", "a", "", "I", "a"],  # repeated tokens, an empty token, length-1 tokens
    ["x" * 47, "y" * 48, "z" * 49, "w" * 80, "é" * 24, "g" * 47 + "😀"],  # around the 48-byte cut
    ["<S>", "</S>", "Zürich", "🙂", " ", "a" * 6, "b" * 7, "c" * 10, "d" * 11, "e" * 16, "f" * 17],
    ["one"],
    [],  # a row of batch padding only
]


def float32_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A float32 copy of a float64 module (weights that were float32 values: cast exactly)."""
    return copy.deepcopy(module).float()


needs_onednn = pytest.mark.skipif(
    not onednn.usable(torch.zeros(1)), reason="oneDNN's pre-packed linear is not in this torch build"
)
needs_mkl = pytest.mark.skipif(not mkl.usable(torch.zeros(1)), reason="MKL's packed GEMM is not in this torch build")
