"""``model_info``: a model described from its options alone (``flair-elmo info``'s data)."""

from __future__ import annotations

import pytest

from flair_elmo_modes.bilm import ElmoBiLm
from flair_elmo_modes.model_info import count_parameters
from tests.helpers import ALIGNED_OPTIONS, TINY_OPTIONS, tiny_options


@pytest.mark.parametrize(
    "options",
    [TINY_OPTIONS, ALIGNED_OPTIONS, tiny_options(n_layers=3, n_highway=0), tiny_options(cell_dim=7, projection_dim=3)],
)
def test_parameter_count_from_the_options_equals_the_built_model(options) -> None:
    assert count_parameters(options) == sum(p.numel() for p in ElmoBiLm(options).parameters())
