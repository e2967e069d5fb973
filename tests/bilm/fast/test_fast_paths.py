"""The switch itself: defaults, the master switch, nested blocks, refusals, one setting per thread.
(What each shortcut computes is tested with the module that takes it.)"""

from __future__ import annotations

import dataclasses
import threading

import pytest

from flair_elmo_modes.bilm.fast.fast_paths import FastPaths, current, fast_paths

SHORTCUTS = [field.name for field in dataclasses.fields(FastPaths) if field.name not in ("enabled", "kernel")]


def test_every_shortcut_but_batch_invariance_is_on_by_default() -> None:
    assert current() == FastPaths()
    assert {name for name in SHORTCUTS if current().allows(name)} == set(SHORTCUTS) - {"batch_invariant"}
    assert current().kernel is None


def test_the_master_switch_turns_every_shortcut_off() -> None:
    with fast_paths(enabled=False, batch_invariant=True) as paths:
        assert not any(paths.allows(name) for name in SHORTCUTS)
        assert paths.batch_invariant  # the field keeps its value; allows() says what is in force


def test_blocks_nest_and_restore_the_setting_even_after_an_error() -> None:
    with fast_paths(onednn=False) as outer:
        assert current() is outer and not outer.onednn and outer.in_place
        with pytest.raises(RuntimeError), fast_paths(in_place=False, kernel="OneDnnKernel") as inner:
            assert not inner.onednn and not inner.in_place and inner.kernel == "OneDnnKernel"
            raise RuntimeError
        assert current() is outer
    assert current() == FastPaths()


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(TypeError, match="unknown fast path"):
        with fast_paths(onednn_everywhere=True):
            pass
    assert current() == FastPaths()


def test_the_setting_applies_to_its_own_thread_only() -> None:
    seen: list[FastPaths] = []
    with fast_paths(enabled=False):
        thread = threading.Thread(target=lambda: seen.append(current()))
        thread.start()
        thread.join()
        assert not current().enabled
    assert seen == [FastPaths()]
