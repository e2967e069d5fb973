"""The one cache policy: a value derived from weights is rebuilt exactly when a source changes (in
place, through ``.data``, by an optimiser, ``load_state_dict``, a cast), and the biLM's caches (packed
weight copies, the token cache) follow it."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from flair_elmo_modes.bilm import batch_to_ids
from flair_elmo_modes.bilm.fast import onednn
from flair_elmo_modes.bilm.fast.derived import DerivedTensors, TrackedParameter, apply_and_drop, track_parameters
from flair_elmo_modes.bilm.fast.fast_paths import fast_paths
from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.bilm.precision import Precision, computing_in
from tests.bilm.helpers import TOKENS, float32_copy, needs_mkl, needs_onednn
from tests.helpers import float64_tolerance, random_bilm


def counting(derived: DerivedTensors, sources: list[torch.Tensor]) -> tuple[list[int], object]:
    """A getter of ``derived``'s value ``"sum"`` of ``sources``, and the list of its builds."""
    builds: list[int] = []

    def get() -> torch.Tensor:
        return derived.get("sum", sources, lambda: (builds.append(1), sum(s.sum() for s in sources))[1])

    return builds, get


def test_a_value_is_rebuilt_when_and_only_when_a_source_changes() -> None:
    weight = nn.Parameter(torch.ones(3))
    derived = DerivedTensors()
    builds, get = counting(derived, [weight])
    get()
    get()  # a parameter not tracked before counts as changed: built again, now tracked
    assert isinstance(weight, TrackedParameter) and len(builds) == 2
    assert float(get()) == 3.0 and len(builds) == 2  # unchanged: kept
    with torch.no_grad():
        weight.mul_(2)
    assert float(get()) == 6.0 and len(builds) == 3
    weight.data.add_(1)  # .data shares the version counter of a tracked parameter
    assert float(get()) == 9.0 and len(builds) == 4
    weight.data = torch.zeros(3)  # new storage
    assert float(get()) == 0.0 and len(builds) == 5
    weight.grad = torch.ones(3)
    torch.optim.SGD([weight], lr=1.0).step()
    assert float(get()) == -3.0 and len(builds) == 6


def test_an_inference_tensor_is_never_trusted() -> None:
    with torch.inference_mode():
        weight = torch.ones(3)  # no version counter
    builds, get = counting(DerivedTensors(), [weight])
    for _ in range(3):
        get()
    assert len(builds) == 3


def test_names_discard_and_copies() -> None:
    weight = nn.Parameter(torch.ones(2))
    derived = DerivedTensors()
    for name in ("a", "b", "c"):
        derived.get(name, [weight], lambda: weight * 2)
    assert derived.names() == {"a", "b", "c"} and len(derived) == 3
    derived.discard({"a", "not held"})
    assert derived.names() == {"b", "c"}
    assert len(copy.deepcopy(derived)) == 0 and len(pickle.loads(pickle.dumps(derived))) == 0  # never copied
    assert type(pickle.loads(pickle.dumps(weight))) is nn.Parameter  # loads as a plain parameter
    derived.clear()
    assert len(derived) == 0


class Holder(nn.Module):
    """A module that drops its derived values when ``_apply`` moves or casts a parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.drops = 0
        track_parameters(self)  # as ElmoBiLm does: an untracked parameter would count as changed

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        return apply_and_drop(self, lambda: super(Holder, self)._apply(fn, recurse), self._drop)

    def _drop(self) -> None:
        self.drops += 1


def test_apply_drops_only_when_a_parameter_moves_or_is_cast() -> None:
    holder = Holder()
    holder.to("cpu")  # already there: the same tensors
    holder.float()
    assert holder.drops == 0
    holder.double()
    assert holder.drops == 1
    holder.to(torch.float64)
    assert holder.drops == 1


def _change_weights(how: str, bilm: ElmoBiLm) -> None:
    """Change the biLM's weights in one of the ways users and libraries do."""
    lstm = bilm.lstm
    if how == "in place":
        with torch.no_grad():
            lstm.weight_hh_l1.mul_(1.5)
            lstm.weight_hr_l0.add_(0.1)
    elif how == ".data":  # bypasses autograd; PyTorch gives .data a version counter of its own
        lstm.weight_hh_l1.data.mul_(0.5)
        bilm.char_encoder.projection.bias.data.add_(0.5)
    elif how == "load_state_dict":
        bilm.load_state_dict(random_bilm(seed=15).state_dict())
    elif how == "load_state_dict(assign=True)":  # new Parameter objects
        bilm.load_state_dict(random_bilm(seed=15).state_dict(), assign=True)
    elif how == "optimizer step":
        parameters = list(bilm.parameters())
        for p in parameters:
            p.grad = torch.ones_like(p)
        torch.optim.SGD(parameters, lr=0.01).step()
    else:
        raise AssertionError(how)


@needs_onednn
@needs_mkl
@pytest.mark.parametrize(
    ("packed", "kernel", "precision", "copies"),
    [
        ("oneDNN", "OneDnnKernel", "fp32", 3),  # (ih, hh, hr) per direction and layer
        ("MKL", "MklKernel", "fp32", 2),  # (hh, hr)
        pytest.param(
            "oneDNN bf16",
            "OneDnnKernel:bf16",
            "bf16",
            3,
            marks=pytest.mark.skipif(not onednn.bf16_usable(torch.zeros(1)), reason="oneDNN packs no bf16 here"),
        ),
    ],
)
@pytest.mark.parametrize(
    "how", ["in place", ".data", "load_state_dict", "load_state_dict(assign=True)", "optimizer step"]
)
def test_every_cache_follows_every_weight_change(
    how: str, packed: str, kernel: str, precision: Precision, copies: int, every_lstm_packs: None
) -> None:
    bilm = random_bilm(seed=14)
    bilm.char_encoder.cache_tokens(batch_to_ids([[t] for t in {t for s in TOKENS for t in s}])[:, 0])
    ids = batch_to_ids(TOKENS * 3)  # 15 rows: MklKernel's packed products run
    # every packed copy of the kernel and the token cache in use
    with fast_paths(kernel=kernel), computing_in(precision), torch.no_grad():
        before = bilm(ids).layers
        assert len(bilm.lstm.derived) == copies * 2 * bilm.lstm.n_layers
        _change_weights(how, bilm)
        after = bilm(ids).layers
        fresh = copy.deepcopy(bilm)  # a copy computes everything anew
        fresh.char_encoder.cache_tokens(None)
        expected = fresh(ids).layers
    # every change moves the layers far beyond float32 rounding (~1e-6 of these values): a stale
    # packed copy or cached token would leave them as they were
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, expected, rtol=0, atol=0)


@needs_onednn
def test_caches_are_dropped_when_the_biLM_is_cast() -> None:
    bilm = random_bilm(seed=14)
    bilm.char_encoder.cache_tokens(batch_to_ids([["a"], ["b"]])[:, 0])
    ids = batch_to_ids([["a", "b", "c"]])
    with fast_paths(batch_invariant=True), torch.no_grad():
        bilm(ids)
        assert len(bilm.lstm.derived) > 0 and len(bilm.char_encoder.derived) > 0
        bilm.double()  # the packed float32 copies must not serve float64 weights
        assert len(bilm.lstm.derived) == 0 and len(bilm.char_encoder.derived) == 0
        assert len(bilm.char_encoder.token_cache._derived) == 0
        layers = bilm(ids).layers
    assert layers.dtype == torch.float64
    plain = copy.deepcopy(bilm)
    plain.char_encoder.cache_tokens(None)
    with fast_paths(enabled=False), torch.no_grad():
        expected, float32 = plain(ids).layers, float32_copy(plain)(ids).layers
    # in place and cached vs the plain path: float64 rounding (float64_tolerance)
    torch.testing.assert_close(layers, expected, rtol=0, atol=float64_tolerance(float32, expected))


def test_a_used_biLM_still_copies_and_pickles() -> None:
    bilm = random_bilm(seed=16)
    ids = batch_to_ids(TOKENS)
    with torch.inference_mode():
        expected = bilm(ids).layers
    for clone in (copy.deepcopy(bilm), pickle.loads(pickle.dumps(bilm))):
        with torch.inference_mode():
            torch.testing.assert_close(clone(ids).layers, expected, rtol=0, atol=0)


@needs_onednn
def test_clear_caches_serves_writes_that_bypass_pytorch() -> None:
    bilm = random_bilm(seed=17)
    bilm.char_encoder.cache_tokens(batch_to_ids([["a"], ["b"]])[:, 0])
    ids = batch_to_ids([["a", "b", "c"]])
    with fast_paths(batch_invariant=True), torch.no_grad():
        bilm(ids)
        bilm.lstm.weight_hh_l1.detach().numpy()[:] *= 0.25  # no version bump: documented as unseen
        bilm.char_encoder.projection.bias.detach().numpy()[:] += 0.5
        bilm.clear_caches()
        after = bilm(ids).layers
        fresh = copy.deepcopy(bilm)
        fresh.char_encoder.cache_tokens(None)
        torch.testing.assert_close(after, fresh(ids).layers, rtol=0, atol=0)
