"""The same code on CUDA, in every precision (marker ``gpu``: skipped where torch sees no CUDA device)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from flair_elmo_modes import ElmoEmbedder
from flair_elmo_modes.bilm import batch_to_ids
from flair_elmo_modes.bilm.fast.fast_paths import fast_paths
from flair_elmo_modes.bilm.precision import computing_in
from tests.helpers import ACCURACY_FACTOR, ALIGNED_OPTIONS, CONTRACTING_SCALE, assert_as_accurate, random_bilm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]

SENTENCES = [["The", "cat", "sat", "on", "the", "mat", "."], ["Colorless", "green", "ideas"], ["A"] * 40]


def test_float32_on_cuda_is_as_accurate_as_on_the_cpu() -> None:
    bilm = random_bilm(ALIGNED_OPTIONS, seed=21, scale=CONTRACTING_SCALE)
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        exact = copy.deepcopy(bilm).double()(ids).layers
        cpu = bilm(ids).layers
        cuda = copy.deepcopy(bilm).cuda()(ids.cuda()).layers.cpu()
    assert_as_accurate(cuda, cpu, exact)


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_reduced_precision_on_cuda_is_as_accurate_as_its_rounded_weights_allow(
    precision: str, dtype: torch.dtype
) -> None:
    # As tests/bilm/test_precision.py for bf16 on the CPU: within ACCURACY_FACTOR of the error of
    # rounding the product weights alone to the type (float64 evaluation).
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    bilm = random_bilm(ALIGNED_OPTIONS, seed=21, scale=CONTRACTING_SCALE)
    ids = batch_to_ids(SENTENCES)
    rounded = copy.deepcopy(bilm)
    with torch.no_grad():
        for name, parameter in rounded.named_parameters():
            if parameter.dim() >= 2 and "char_embedding" not in name:
                parameter.copy_(parameter.to(dtype).float())
        exact = copy.deepcopy(bilm).double()(ids).layers
        weights_only = rounded.double()(ids).layers
        with computing_in(precision):  # type: ignore[arg-type]
            reduced = copy.deepcopy(bilm).cuda()(ids.cuda()).layers.cpu()
    assert reduced.dtype == torch.float32
    for k in range(exact.shape[0]):
        errors = (reduced[k] - exact[k]).abs(), (weights_only[k] - exact[k]).abs()
        for statistic in (torch.mean, torch.max):
            assert statistic(errors[0]) <= ACCURACY_FACTOR * statistic(errors[1]), (precision, k, statistic)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_the_embedder_runs_on_cuda_and_returns_float32(tiny_model_files, precision: str) -> None:
    embedder = ElmoEmbedder(*tiny_model_files, cuda_device=0, precision=precision)
    layers = embedder.embed_batch(SENTENCES)
    assert [a.dtype for a in layers] == [np.float32] * len(SENTENCES)
    with fast_paths(planned=False):  # the plan measures on CUDA too; the fixed rule runs as well
        assert [a.shape for a in embedder.embed_batch(SENTENCES)] == [a.shape for a in layers]
