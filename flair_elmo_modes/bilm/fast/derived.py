"""The one cache policy of the biLM: values derived from weights, dropped when a weight changes.

Derived values (oneDNN- and MKL-packed weight copies, bf16/fp16 weight copies, the vectors of a
cached vocabulary, the layers of cached sentences) are stored with a key of their source tensors
(:func:`weights_key`): each source's identity, storage, dtype, device, shape and in-place version
count. An optimiser step, ``load_state_dict``, ``copy_`` under ``no_grad`` and every other in-place
op bump the version; ``.to()``/``.double()`` replace the storage (and modules also drop their
caches in ``_apply``, as PyTorch's ``RNNBase`` drops its flat weights).

Writes through ``p.data`` do not bump ``p``'s version in PyTorch (``.data`` has a version counter
of its own). So that they cannot be missed, every parameter a key is taken of becomes a
:class:`TrackedParameter`, whose ``.data`` is ``detach()`` (sharing the version counter) and
which otherwise behaves as ``nn.Parameter``. A parameter that was not tracked yet counts as
changed, and so does an inference tensor (weights created under ``torch.inference_mode`` have no
version counter: derived values are rebuilt on every use). Writes that bypass PyTorch entirely
(a numpy view's buffer, raw pointers) are not seen: call ``ElmoBiLm.clear_caches()`` after those.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import torch
from torch import nn


class TrackedParameter(nn.Parameter):
    """An ``nn.Parameter`` whose ``.data`` shares its version counter, so in-place writes through
    ``.data`` are visible to :func:`weights_key`. Pickles and loads as a plain ``nn.Parameter``
    (tracked again when next used)."""

    @property  # type: ignore[override]
    def data(self) -> torch.Tensor:
        return self.detach()

    @data.setter
    def data(self, value: torch.Tensor) -> None:
        torch._C.TensorBase.data.__set__(self, value)  # type: ignore[attr-defined]


def track(tensor: torch.Tensor) -> bool:
    """Make a parameter a :class:`TrackedParameter` in place; whether it already was one.

    Other tensors (buffers, activations) are left alone and count as tracked: their writes are
    their owner's business.
    """
    if type(tensor) is nn.Parameter:
        tensor.__class__ = TrackedParameter
        return False
    return True


def track_parameters(module: nn.Module) -> None:
    """Track every parameter of ``module`` (see :class:`TrackedParameter`)."""
    for parameter in module.parameters():
        track(parameter)


class _Untracked:
    """A key part that equals nothing: the tensor was not tracked, so it may have changed."""

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return id(self)


def weights_key(tensors: Iterable[torch.Tensor]) -> tuple[Hashable, ...]:
    """A key that changes whenever any of ``tensors`` may hold other values (see the module doc).

    Compare keys with ``==``; a key holds weak references only.
    """
    parts: list[Hashable] = []
    for tensor in tensors:
        if tensor.is_inference():  # made under inference_mode: no version counter, so never trusted
            parts.append(_Untracked())
            continue
        was_tracked = track(tensor)
        parts.append(
            (
                _SameObject(tensor),
                tensor.data_ptr(),
                tensor._version,
                tensor.dtype,
                tensor.device,
                tuple(tensor.shape),
                True if was_tracked else _Untracked(),
            )
        )
    return tuple(parts)


class _SameObject:
    """Equal only to a reference to the same live object (ids of dead objects are reused)."""

    __slots__ = ("_ref",)

    def __init__(self, obj: Any) -> None:
        self._ref = weakref.ref(obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SameObject) and self._ref() is not None and self._ref() is other._ref()

    def __hash__(self) -> int:
        return id(self._ref())


class DerivedTensors:
    """Named tensors computed from weights, each rebuilt when its sources change.

    Not pickled or deep-copied: a copy of the module computes them again on first use.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple[Hashable, ...], Any]] = {}

    def get(self, name: str, sources: Iterable[torch.Tensor], build: Callable[[], Any]) -> Any:
        """The value ``build()`` made from ``sources``, made again if any source changed."""
        key = weights_key(sources)
        entry = self._entries.get(name)
        if entry is None or entry[0] != key:
            with torch.no_grad():
                entry = self._entries[name] = (key, build())
        return entry[1]

    def clear(self) -> None:
        self._entries.clear()

    def names(self) -> set[str]:
        """The names of the values held now."""
        return set(self._entries)

    def discard(self, names: set[str]) -> None:
        """Drop the values called ``names`` (rebuilt when next asked for)."""
        for name in names:
            self._entries.pop(name, None)

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict[str, Any]:
        return {"_entries": {}}

    def __deepcopy__(self, memo: dict[int, Any]) -> DerivedTensors:
        return DerivedTensors()


def apply_and_drop(module: nn.Module, apply: Callable[[], nn.Module], drop: Callable[[], None]) -> nn.Module:
    """Run a module's ``_apply`` (``.to()``, ``.double()``, ``.cuda()``...) and call ``drop`` if it
    moved or cast any parameter, as ``RNNBase._apply`` drops its flat weights; a no-op move such
    as ``.to(device)`` onto the same device keeps the caches."""
    before = weights_key(module.parameters())
    result = apply()
    if weights_key(module.parameters()) != before:
        drop()
    return result


def clear_derived(module: nn.Module) -> None:
    """Drop every :class:`DerivedTensors` held by ``module`` or its submodules."""
    for submodule in module.modules():
        for value in vars(submodule).values():
            if isinstance(value, DerivedTensors):
                value.clear()
