"""Warnings raised from this package's modules are errors under pytest; only named third-party
modules' warnings are ignored (pyproject.toml, each with its reason)."""

from __future__ import annotations

import warnings

import pytest


@pytest.mark.parametrize("category", [UserWarning, DeprecationWarning, FutureWarning, PendingDeprecationWarning])
@pytest.mark.parametrize("module", ["flair_elmo_modes.embedder", "flair_elmo_modes.bilm.lstm", "tests.helpers"])
def test_a_warning_from_our_modules_is_an_error(module: str, category: type[Warning]) -> None:
    with pytest.raises(category, match="ours"):
        warnings.warn_explicit("ours", category, module.replace(".", "/") + ".py", 1, module=module)


def test_only_named_third_party_modules_are_ignored(pytestconfig: pytest.Config) -> None:
    filters = pytestconfig.getini("filterwarnings")
    assert filters[0] == "error"
    for entry in filters[1:]:
        action, _message, _category, module = (entry.split(":") + [""] * 4)[:4]
        assert action == "ignore" and module, f"{entry!r}: an ignore must name the module that warns"
        assert not module.startswith(("flair_elmo_modes", "tests", "benchmarks", "scripts")), entry
