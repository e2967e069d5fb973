"""``ELMoEmbeddings`` is registered with Flair whether Flair is imported before or after the package.

:class:`PostImportHook` is checked on two throwaway packages (a watched one and the one to import
after it), in this process; the real thing in fresh interpreters with a saved ``SequenceTagger``.
"""

from __future__ import annotations

import importlib
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest

from flair_elmo_modes._flair_hook import PostImportHook

REPO = Path(__file__).resolve().parent.parent

Packages = Callable[..., tuple[str, str]]


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Packages]:
    """``make(then_source=...)``: a watched package and a module ``then`` with unique names, on sys.path.

    The watched package sets ``DONE = True`` on its last line; by default ``then`` records whether
    it saw that, in ``watched.SEEN_DONE``. Their modules and hooks are removed afterwards.
    """
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def make(then_source: str | None = None) -> tuple[str, str]:
        suffix = uuid.uuid4().hex[:8]
        watched, then = f"watched_{suffix}", f"then_{suffix}"
        (tmp_path / watched).mkdir()
        (tmp_path / watched / "__init__.py").write_text("DONE = False\nDONE = True\n", encoding="utf-8")
        default = f"import {watched}\n{watched}.SEEN_DONE = {watched}.DONE\n"
        (tmp_path / f"{then}.py").write_text(then_source or default, encoding="utf-8")
        importlib.invalidate_caches()
        names.extend([watched, then])
        return watched, then

    yield make
    sys.meta_path[:] = [f for f in sys.meta_path if not (isinstance(f, PostImportHook) and f.module in names)]
    for name in names:
        sys.modules.pop(name, None)


def install(module: str, then: str) -> PostImportHook:
    hook = PostImportHook(module, then)
    sys.meta_path.insert(0, hook)
    return hook


def test_hook_imports_then_once_the_watched_module_has_run(packages: Packages) -> None:
    watched, then = packages()
    hook = install(watched, then)
    module = importlib.import_module(watched)
    assert then in sys.modules and module.SEEN_DONE is True
    assert hook not in sys.meta_path  # one shot
    # The real loader is back: nothing of the hook stays on the module.
    assert type(module.__loader__) is SourceFileLoader and module.__spec__.loader is module.__loader__
    assert importlib.reload(module).DONE is True


def test_hook_leaves_other_imports_alone(packages: Packages) -> None:
    watched, then = packages()
    other, _ = packages()
    hook = install(watched, then)
    importlib.import_module(other)
    assert hook in sys.meta_path and then not in sys.modules and watched not in sys.modules


def test_then_may_import_the_watched_module_first(packages: Packages) -> None:
    """``import flair_elmo_modes.embeddings`` before Flair: the hook meets the half-imported adapter."""
    watched, then = packages()
    hook = install(watched, then)
    importlib.import_module(then)  # imports watched, whose hook imports then again: no recursion
    assert sys.modules[watched].SEEN_DONE is True and hook not in sys.meta_path


def test_a_failing_then_is_logged_and_the_watched_import_succeeds(
    packages: Packages, caplog: pytest.LogCaptureFixture
) -> None:
    watched, then = packages(then_source="raise RuntimeError('broken adapter')\n")
    install(watched, then)
    with caplog.at_level(logging.WARNING, logger="flair_elmo_modes._flair_hook"):
        assert importlib.import_module(watched).DONE is True
    assert then not in sys.modules
    assert f"could not import {then} after {watched} (RuntimeError: broken adapter)" in caplog.text


def test_a_missing_module_fails_as_without_the_hook(packages: Packages) -> None:
    _, then = packages()
    missing = f"missing_{uuid.uuid4().hex[:8]}"
    hook = install(missing, then)
    with pytest.raises(ModuleNotFoundError, match=missing):
        importlib.import_module(missing)
    assert hook not in sys.meta_path and then not in sys.modules


HOOKS_WITHOUT_FLAIR = """
import importlib, sys
import flair_elmo_modes
from flair_elmo_modes._flair_hook import PostImportHook
importlib.reload(flair_elmo_modes)  # registering twice installs one hook
hooks = [f for f in sys.meta_path if isinstance(f, PostImportHook)]
assert [(h.module, h.then) for h in hooks] == [("flair", "flair_elmo_modes.embeddings")], hooks
assert sys.meta_path[0] is hooks[0]
assert "flair" not in sys.modules and "flair_elmo_modes.embeddings" not in sys.modules
"""


def test_import_without_flair_installs_one_hook() -> None:
    subprocess.run([sys.executable, "-c", HOOKS_WITHOUT_FLAIR], cwd=REPO, check=True, timeout=120)


# -------------------------------------------------------------------------------------------------
# A saved tagger loads in a fresh interpreter, with Flair imported before or after the package.

PREDICT = """
from flair.data import Sentence
sentences = [Sentence(text) for text in probe]
tagger.predict(sentences)
print(json.dumps([[[t.get_label("pos").value, t.get_label("pos").score] for t in s] for s in sentences]))
"""

SAVE = (
    """
import json, sys
import torch
from flair.data import Dictionary
from flair.models import SequenceTagger
from flair_elmo_modes import ELMoEmbeddings
path, probe, tags = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
torch.manual_seed(0)
dictionary = Dictionary(add_unk=False)
for tag in tags:
    dictionary.add_item(tag)
tagger = SequenceTagger(
    hidden_size=8, embeddings=ELMoEmbeddings("en-tiny", embedding_type="top"), tag_dictionary=dictionary,
    tag_type="pos", use_crf=False,
)
tagger.eval()  # a new tagger is in training mode: its dropout would change every prediction
tagger.save(path)
"""
    + PREDICT
)

LOAD = (
    """
import json, sys
order, path, probe = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if order == "package, then flair":
    import flair_elmo_modes
    from flair.models import SequenceTagger
else:
    from flair.models import SequenceTagger
    import flair_elmo_modes
import flair
from flair_elmo_modes._flair_hook import PostImportHook
assert not any(isinstance(finder, PostImportHook) for finder in sys.meta_path)
assert type(flair.__loader__).__module__ != "flair_elmo_modes._flair_hook", flair.__loader__
assert flair.__spec__.loader is flair.__loader__
tagger = SequenceTagger.load(path)
assert type(tagger.embeddings).__name__ == "ELMoEmbeddings"
"""
    + PREDICT
)


def run_python(*args: str) -> list[list[list]]:
    result = subprocess.run([sys.executable, "-c", *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_saved_tagger_loads_whatever_the_import_order(tmp_path: Path) -> None:
    from tests.test_flair_training import PROBE, WORDS

    path = str(tmp_path / "tagger.pt")
    saved = run_python(SAVE, path, json.dumps(PROBE), json.dumps(list(WORDS)))
    for order in ("package, then flair", "flair, then package"):
        loaded = run_python(LOAD, order, path, json.dumps(PROBE))
        assert [[tag for tag, _ in s] for s in loaded] == [[tag for tag, _ in s] for s in saved], order
        # The saved tagger's parameters, bitwise, on the same sentences in the same batch, with the
        # same kernels and threads (one machine, default thread count): the same computation, so
        # bitwise the same scores (JSON keeps a float's repr, which reads back exactly).
        scores = [score for s in loaded for _, score in s]
        assert scores == [score for s in saved for _, score in s], order
