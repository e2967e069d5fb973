"""``system``: the machine's description (``flair-elmo info --system``): the kernel rule, native bf16."""

from __future__ import annotations

import pytest
import torch

from flair_elmo_modes.bilm.fast import onednn
from flair_elmo_modes.bilm.fast.fast_paths import fast_paths
from flair_elmo_modes.system import kernel_rule, native_bf16


def test_kernel_rule_follows_the_fast_paths_switch() -> None:
    with fast_paths(enabled=False):
        assert {k for kernels in kernel_rule().values() for k in kernels.values()} == {"TorchKernel"}
    with fast_paths(batch_invariant=True):
        expected = "OneDnnKernel" if onednn.usable(torch.zeros(1)) else "TorchKernel:in_place"
        assert {k for kernels in kernel_rule().values() for k in kernels.values()} == {expected}


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        (frozenset({"avx2", "avx512f", "avx512_bf16"}), True),  # AMD Zen 4, Intel Cooper Lake
        (frozenset({"avx2", "amx_tile", "amx_bf16"}), True),  # Intel Sapphire Rapids
        (frozenset({"fp", "asimd", "bf16"}), True),  # Arm with the BF16 extension
        (frozenset({"avx2", "avx512f", "avx512_vnni"}), False),  # Intel Cascade Lake
        (None, None),  # not Linux: unknown
    ],
)
def test_native_bf16_from_the_cpu_flags(flags: frozenset[str] | None, native: bool | None) -> None:
    assert native_bf16(flags) is native
