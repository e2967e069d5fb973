"""Register ``ELMoEmbeddings`` with Flair whenever Flair is imported, without importing Flair.

Flair reloads a saved model's embeddings by class name: ``@register_embeddings`` puts the class
into ``flair.embeddings.base.EMBEDDING_CLASSES`` when :mod:`flair_elmo_modes.embeddings` runs, and
``load_embeddings`` looks the name up there. So ``import flair_elmo_modes`` must make a tagger
saved with ``ELMoEmbeddings`` loadable, yet importing Flair (with transformers) takes seconds that
the biLM, ``ElmoEmbedder`` and the command line do not need. :func:`register_with_flair` therefore

- imports the adapter at once if Flair is already imported;
- otherwise puts a :class:`PostImportHook` on ``sys.meta_path``: when ``flair`` is imported, the
  hook wraps the loader that the other finders found, and imports the adapter once
  ``flair/__init__.py`` has run.

The hook watches the top-level ``flair`` package, not ``flair.embeddings``: any ``import flair.x``
runs ``flair/__init__.py`` first, and that imports all of Flair (``flair.models`` imports
``flair.embeddings``) before a model can be loaded. ``flair.embeddings`` itself finishes while
``flair/__init__.py`` is still half done, too early for the adapter's ``from flair... import``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

FLAIR = "flair"
ADAPTER = "flair_elmo_modes.embeddings"

logger = logging.getLogger(__name__)


def register_with_flair() -> None:
    """Register ``ELMoEmbeddings`` with Flair now if Flair is imported, else right after it is."""
    if ADAPTER in sys.modules:
        return
    if FLAIR in sys.modules:
        import_logging_failure(ADAPTER, after=FLAIR)
    elif not any(isinstance(hook, PostImportHook) and hook.key == (FLAIR, ADAPTER) for hook in sys.meta_path):
        sys.meta_path.insert(0, PostImportHook(FLAIR, ADAPTER))


def import_logging_failure(name: str, after: str) -> None:
    """Import ``name`` (because ``after`` was imported); a failure is logged, not raised, so that it
    cannot break the import of ``after``. Accessing the failed module's names raises it again."""
    try:
        importlib.import_module(name)
    except Exception as error:
        logger.warning(
            "could not import %s after %s (%s: %s); models saved with its embeddings will not load",
            name,
            after,
            type(error).__name__,
            error,
        )


class PostImportHook:
    """A one-shot ``sys.meta_path`` finder: once the top-level ``module`` has run, import ``then``.

    It finds nothing itself. Asked for ``module``, it leaves ``sys.meta_path`` (so it fires at
    most once and never recursively), lets the other finders find ``module`` and wraps the loader
    of their spec. Every other name, and a ``module`` that is not installed, is left to the others.
    """

    def __init__(self, module: str, then: str) -> None:
        self.module, self.then = module, then

    @property
    def key(self) -> tuple[str, str]:
        return self.module, self.then

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != self.module:
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:  # already removed by another thread
            pass
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None  # not installed: the import fails as it would without the hook
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenLoader(spec.loader, fullname, self.then)
        return spec


class _ThenLoader:
    """Runs the real loader, then imports ``then``; everything else goes to the real loader."""

    def __init__(self, loader: Any, name: str, then: str) -> None:
        self._loader, self._name, self._then = loader, name, then

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # Put the real loader back first: the module, and whoever inspects it later, sees only that one.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)  # raises as usual if the module fails
        import_logging_failure(self._then, after=self._name)

    def __getattr__(self, name: str) -> Any:  # only for names not set on the wrapper itself
        if name.startswith("_"):  # e.g. _loader on a half-built copy: no recursion
            raise AttributeError(name)
        return getattr(self._loader, name)
