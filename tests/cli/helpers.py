"""Helpers of the ``flair-elmo`` tests: running the command in-process and as a subprocess, inputs, checks."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from flair_elmo_modes import ElmoEmbedder, catalogue, models
from flair_elmo_modes.bilm.model import BiLmOutput
from flair_elmo_modes.cli import main
from flair_elmo_modes.hdf5_output import DEFAULT_SORT_BATCHES
from flair_elmo_modes.runner import BiLmRunner
from tests.helpers import default_signals

REPO = Path(__file__).resolve().parent.parent.parent


LINES = [
    "I ate an apple for breakfast",
    "  He went to the prison cell with his cell phone .\t",
    "🙂 ناصر über",
    "x",
    "I ate an apple for breakfast",  # a duplicate: the later index wins in sentence_to_index
    " ".join(f"w{i}" for i in range(40)),
    "a\tb   c",
]


def write_input(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def expected_arrays(
    embedder: ElmoEmbedder, lines: list[str], batch_size: int, sort_batches: int = DEFAULT_SORT_BATCHES
) -> list[np.ndarray]:
    """What ``embed`` should store: the same batches (by length within windows) give bitwise the same arrays."""
    token_lists = [line.split() for line in lines]
    return list(embedder.embed_sentences(token_lists, batch_size=batch_size, sort_batches=sort_batches))


def leftovers(directory: Path) -> list[str]:
    """Temporary files ``embed`` may have left behind."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def before_each_batch(monkeypatch: pytest.MonkeyPatch, hook: Callable[[int, list[list[str]]], object]) -> None:
    """Call ``hook(number, batch)`` before the biLM runner embeds its ``number``-th batch (from 1)."""
    original = BiLmRunner.run
    numbers = itertools.count(1)

    def spied(self: BiLmRunner, batch: list[list[str]], grad: bool = False) -> BiLmOutput:
        hook(next(numbers), batch)
        return original(self, batch)

    monkeypatch.setattr(BiLmRunner, "run", spied)


def assert_untouched(output: Path) -> None:
    assert output.read_bytes() == b"precious"
    assert leftovers(output.parent) == []


# --------------------------------------------------------------------------------------------
# signals from outside: one mechanism for embed and train

SHIPPED_OPTIONS = catalogue.SHIPPED_DIR / models.SHIPPED_MODEL / "options.json"
needs_shipped_model = pytest.mark.skipif(not SHIPPED_OPTIONS.is_file(), reason="shipped model not built yet")
posix_signals = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")


def start_cli(*argv: str | Path, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flair_elmo_modes", *(str(arg) for arg in argv)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
        **kwargs,  # type: ignore[arg-type]
    )


def wait_for_temp(process: subprocess.Popen[str], directory: Path, timeout: float = 180) -> None:
    """Until the run has created its temporary output: it is embedding."""
    deadline = time.monotonic() + timeout
    while not leftovers(directory):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the temporary output never appeared"
        time.sleep(0.02)


def long_input(path: Path, lines: int = 5000) -> Path:
    """Far more than a run gets through in a few seconds."""
    return write_input(path, [" ".join(f"token{(i * 7 + j) % 97}" for j in range(30)) for i in range(lines)])


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


TINY_TRAIN = ("--char-dim", "4", "--filters", "1:4,2:8", "--cell-dim", "16", "--projection-dim", "8")


def write_training_text(path: Path, sentences: int = 300) -> Path:
    words = "the a cat dog sat ran on under mat rug".split()
    lines = [" ".join(words[(i * 3 + j) % len(words)] for j in range(4 + i % 5)) for i in range(sentences)]
    return write_input(path, lines)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()}


def limit_file_size(limit: int) -> None:
    """In the child: writes past ``limit`` bytes fail with EFBIG (a real write error, as a full disk)."""
    import resource

    default_signals()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
