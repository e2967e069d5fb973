"""bf16/fp16 products: where they apply, what they leave in float32, how accurate, and refusals."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from flair_elmo_modes.bilm import batch_to_ids, precision
from flair_elmo_modes.bilm.fast.fast_paths import fast_paths
from flair_elmo_modes.bilm.fast.kernels import candidates
from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.bilm.precision import check_precision, computing_in, dtype_of
from tests.helpers import ACCURACY_FACTOR, ALIGNED_OPTIONS, CONTRACTING_SCALE, assert_as_accurate, random_bilm

SENTENCES = [
    ["The", "cat", "sat", "on", "the", "mat", "."],
    ["Colorless", "green", "ideas", "sleep", "furiously"],
    ["A"],
    ["Buffalo"] * 12,
]


def bf16_rounded_weights(bilm: ElmoBiLm) -> ElmoBiLm:
    """A float64 copy of ``bilm`` whose product weights (every parameter with 2 or more dims but the
    character embedding, which is a lookup) are rounded to bf16 first."""
    rounded = copy.deepcopy(bilm)
    with torch.no_grad():
        for name, parameter in rounded.named_parameters():
            if parameter.dim() >= 2 and "char_embedding" not in name:
                parameter.copy_(parameter.to(torch.bfloat16).float())
    return rounded.double()


def layers(bilm: ElmoBiLm, ids: torch.Tensor, in_precision: precision.Precision = "fp32") -> torch.Tensor:
    with torch.no_grad(), computing_in(in_precision):
        return bilm(ids).layers


def test_bf16_is_as_accurate_as_its_rounded_weights_allow() -> None:
    # Independent expectation: a float64 evaluation with the weights rounded to bf16 shows the error
    # that rounding the weights alone causes. The bf16 path also rounds each product's input (as
    # large an error again) and its result (once more), and accumulates in float32: its error per
    # layer must stay within ACCURACY_FACTOR (3, about the sqrt(3) of three such roundings plus room
    # for the spread) of the weights' own, mean and max. A product left in float32 would not reach
    # it from above, a bf16 state or an unrounded sum would exceed it.
    bilm = random_bilm(ALIGNED_OPTIONS, seed=21, scale=CONTRACTING_SCALE)
    ids = batch_to_ids(SENTENCES)
    exact = layers(copy.deepcopy(bilm).double(), ids)
    weights_only = layers(bf16_rounded_weights(bilm), ids)
    reduced = layers(bilm, ids, "bf16")
    float32 = layers(bilm, ids)
    assert reduced.dtype == torch.float32
    for k in range(exact.shape[0]):
        reduced_error, weight_error = (reduced[k] - exact[k]).abs(), (weights_only[k] - exact[k]).abs()
        for statistic in (torch.mean, torch.max):
            assert statistic(reduced_error) <= ACCURACY_FACTOR * statistic(weight_error), (k, statistic)
        # and bf16 did run: its error is far beyond float32's (bf16 keeps 8 bits, float32 24)
        assert reduced_error.mean() > 100 * (float32[k] - exact[k]).abs().mean()


def test_fp32_is_untouched_by_a_bf16_run_before_it() -> None:
    # The token cache and the packed copies are kept per precision: a bf16 run must not leave
    # anything a float32 run would then use.
    bilm = random_bilm(seed=3)
    bilm.char_encoder.cache_tokens(batch_to_ids([[t] for s in SENTENCES for t in s])[:, 0])
    ids = batch_to_ids(SENTENCES)
    with fast_paths(planned=False):
        before = layers(bilm, ids)
        layers(bilm, ids, "bf16")
        after = layers(bilm, ids)
    torch.testing.assert_close(after, before, rtol=0, atol=0)  # the same kernels, bitwise


def test_a_float64_biLM_ignores_reduced_precision() -> None:
    bilm = random_bilm(seed=3).double()
    ids = batch_to_ids(SENTENCES)
    torch.testing.assert_close(layers(bilm, ids, "bf16"), layers(bilm, ids), rtol=0, atol=0)


def test_autograd_computes_in_the_weights_dtype() -> None:
    bilm = random_bilm(ALIGNED_OPTIONS, seed=21, scale=CONTRACTING_SCALE)
    ids = batch_to_ids(SENTENCES)
    with computing_in("bf16"):
        trained = bilm(ids).layers  # grad enabled, weights require grad: the float32 autograd path
    assert trained.requires_grad
    assert_as_accurate(trained.detach(), layers(bilm, ids), layers(copy.deepcopy(bilm).double(), ids))


def test_bf16_kernels_are_candidates_only_under_bf16() -> None:
    like = torch.zeros(1)
    assert not any(":bf16" in name for name in candidates(64, 16, like))
    with computing_in("bf16"):
        names = candidates(64, 16, like)
    assert names[0] == "TorchKernel:bf16" and "TorchKernel:in_place" in names  # float32 stays a fallback
    with computing_in("bf16"):
        assert precision.product_dtype(like) == torch.bfloat16
        assert precision.product_dtype(like.double()) is None
    assert dtype_of("fp16") == torch.float16


def test_unknown_precisions_and_fp16_on_a_cpu_are_refused() -> None:
    with pytest.raises(ValueError, match="one of fp32, bf16, fp16; got 'int4'"):
        check_precision("int4")
    with pytest.raises(ValueError, match=r"fp16.*CUDA"):
        check_precision("fp16", "cpu")
    assert check_precision("fp32", "cpu") == "fp32"


@pytest.mark.parametrize(
    ("flags", "environment", "named"),
    [
        (frozenset({"avx2", "avx512f", "avx512_vnni"}), {}, "avx512_bf16"),
        (frozenset({"avx2", "avx512f", "avx512_bf16"}), {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "ONEDNN_MAX_CPU_ISA=AVX2"),
        (frozenset({"avx2", "avx512f", "avx512_bf16"}), {}, None),
        (frozenset({"avx2", "amx_bf16"}), {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, None),
    ],
)
def test_bf16_warns_once_where_it_is_not_native(
    flags: frozenset[str], environment: dict[str, str], named: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    monkeypatch.setattr(precision, "_warned", set())
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_precision("bf16", "cpu")
        check_precision("bf16", "cpu")
    messages = [str(w.message) for w in caught]
    if named is None:
        assert messages == []
    else:
        assert len(messages) == 1 and "slower than 'fp32'" in messages[0] and named in messages[0]
