import json
import platform

import numpy as np
import pytest
import torch

from flair_elmo_modes.bilm import ElmoBiLm, onednn
from flair_elmo_modes.bilm.fast_paths import fast_paths
from flair_elmo_modes.bilm.kernels import kernel_name
from flair_elmo_modes.cli import main
from flair_elmo_modes.cli.info import count_parameters
from flair_elmo_modes.models import PUBLISHED_MODELS, published_architecture
from flair_elmo_modes.system import kernel_rule, native_bf16
from tests.helpers import ALIGNED_OPTIONS, TINY_OPTIONS, tiny_options, torch_threads


@pytest.mark.parametrize(
    "options",
    [TINY_OPTIONS, ALIGNED_OPTIONS, tiny_options(n_layers=3, n_highway=0), tiny_options(cell_dim=7, projection_dim=3)],
)
def test_parameter_count_from_the_options_equals_the_built_model(options) -> None:
    assert count_parameters(options) == sum(p.numel() for p in ElmoBiLm(options).parameters())


def test_info_system_reports_this_process(capsys: pytest.CaptureFixture[str]) -> None:
    with torch_threads(1):
        assert main(["info", "--system", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["versions"]["torch"] == torch.__version__ and info["versions"]["numpy"] == np.__version__
    assert info["versions"]["python"] == platform.python_version()
    assert info["threads"]["torch"] == 1  # the count in force, not a default
    assert info["cpu"]["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["math"]["mkl"] == torch.backends.mkl.is_available()
    assert info["math"]["onednn"] == torch.backends.mkldnn.is_available()
    assert info["cuda"] == [] or torch.cuda.is_available()
    assert set(info["kernels"]) == {name for name in PUBLISHED_MODELS if published_architecture(name)}
    # the plan is the decision a forward of that many rows makes (tests/bilm/test_fast_paths.py checks
    # that choose_kernel builds the kernel kernel_name names)
    original = published_architecture("original")
    for batch, kernel in info["kernels"]["original"].items():
        assert kernel == kernel_name(original.cell_dim, original.projection_dim, int(batch), torch.zeros(0))
    assert main(["info", "--system"]) == 0
    text = capsys.readouterr().out
    assert f"torch {torch.__version__}" in text and "kernel rule original" in text and "native bf16" in text
    assert info["kernel_plan"]["file"] in text


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
