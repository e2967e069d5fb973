"""Fixtures of the fast machinery's tests."""

from __future__ import annotations

import pytest

from flair_elmo_modes.bilm.fast import mkl


@pytest.fixture
def every_lstm_packs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the small test LSTMs take MklKernel, which is meant for large recurrent weights."""
    monkeypatch.setattr(mkl, "MIN_RECURRENT_WEIGHT", 0)
