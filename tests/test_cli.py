"""``flair-elmo``: called in-process through ``main``, and as a subprocess for signals and real write errors."""

from __future__ import annotations

import argparse
import copy
import errno
import inspect
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from flair_elmo_modes import ElmoEmbedder, models
from flair_elmo_modes.bilm import ElmoFileError, load_bilm
from flair_elmo_modes.bilm.model import BiLmOutput
from flair_elmo_modes.cli import demo, embed, errors, info, main, train
from flair_elmo_modes.cli.embed import DEFAULT_SORT_BATCHES
from flair_elmo_modes.models import ModelDownloadError
from flair_elmo_modes.runner import BiLmRunner
from tests.helpers import (
    FLOAT64_EPS,
    assert_as_accurate,
    cache_as_published,
    default_signals,
    full_disk,
    write_random_model,
)

REPO = Path(__file__).resolve().parent.parent

LINES = [
    "I ate an apple for breakfast",
    "  He went to the prison cell with his cell phone .\t",
    "🙂 ناصر über",
    "x",
    "I ate an apple for breakfast",  # a duplicate: the later index wins in sentence_to_index
    " ".join(f"w{i}" for i in range(40)),
    "a\tb   c",
]


@pytest.fixture
def model_dir(tiny_model_files: tuple[Path, Path]) -> Path:
    return tiny_model_files[0].parent


@pytest.fixture
def embedder(tiny_model_files: tuple[Path, Path]) -> ElmoEmbedder:
    return ElmoEmbedder(*tiny_model_files)


def write_input(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def expected_arrays(
    embedder: ElmoEmbedder, lines: list[str], batch_size: int, sort_batches: int = DEFAULT_SORT_BATCHES
) -> list[np.ndarray]:
    """What ``embed`` should store: the same batches (by length within windows) give bitwise the same arrays."""
    token_lists = [line.split() for line in lines]
    return list(embedder.embed_sentences(token_lists, batch_size=batch_size, sort_batches=sort_batches))


def float64_arrays(embedder: ElmoEmbedder, lines: list[str]) -> list[np.ndarray]:
    """The lines' layers from a float64 copy of the embedder's biLM (rounded to float32 on output)."""
    return ElmoEmbedder(bilm=copy.deepcopy(embedder.bilm).double()).embed_batch([line.split() for line in lines])


def cosine_tolerance(dim: int) -> float:
    """Largest difference of two float64 cosine similarities of the same float32 vectors of ``dim``
    elements, computed by other formulas (a.b / (|a| |b|), or a/|a| . b/|b|): the dot product is
    within dim half-ulps of |a| |b| (Cauchy-Schwarz), each norm within dim / 2 + 1, the division and
    products a few more, so each is within (2 dim + 4) half-ulps of the exact cosine."""
    return (2 * dim + 4) * FLOAT64_EPS


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


# --------------------------------------------------------------------------------------------
# embed: layout and values


def test_embed_writes_allennlp_layout_with_embedder_vectors(
    tmp_path: Path, model_dir: Path, embedder: ElmoEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", LINES)
    output = tmp_path / "out.hdf5"
    code, out, err = run(capsys, "embed", source, output, "--model", model_dir, "--batch-size", "3", "--quiet")
    assert (code, out, err) == (0, "", "")
    expected = expected_arrays(embedder, LINES, batch_size=3)
    with h5py.File(output, "r") as handle:
        assert set(handle.keys()) == {str(i) for i in range(len(LINES))} | {"sentence_to_index"}
        for i, array in enumerate(expected):
            dataset = handle[str(i)]
            assert dataset.dtype == np.float32
            assert dataset.shape == (3, len(LINES[i].split()), 16)
            np.testing.assert_array_equal(dataset[()], array)
        index = handle["sentence_to_index"]
        assert index.shape == (1,)
        mapping = json.loads(index.asstr()[0])
    assert mapping == {line.strip(): str(i) for i, line in enumerate(LINES)}  # later duplicates overwrite
    assert mapping["I ate an apple for breakfast"] == "4"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("flags", "select"),
    [
        (["--all"], lambda a: a),
        (["--top"], lambda a: a[-1]),
        (["--average"], lambda a: np.average(a, axis=0)),
        (["--layers", "0,2"], lambda a: a[[0, 2]]),
        (["--layers=-1,0"], lambda a: a[[2, 0]]),
        (["--layers", "1"], lambda a: a[[1]]),
    ],
)
def test_embed_layer_modes(
    tmp_path: Path,
    model_dir: Path,
    embedder: ElmoEmbedder,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    select: object,
) -> None:
    source = write_input(tmp_path / "in.txt", LINES)
    output = tmp_path / "out.hdf5"
    code, _, err = run(capsys, "embed", source, output, "--model", model_dir, "--quiet", *flags)
    assert code == 0, err
    with h5py.File(output, "r") as handle:
        for i, array in enumerate(expected_arrays(embedder, LINES, batch_size=64)):
            want = select(array)  # type: ignore[operator]
            assert handle[str(i)].dtype == np.float32
            assert handle[str(i)].shape == want.shape
            np.testing.assert_array_equal(handle[str(i)][()], want)


def test_embed_shapes_per_mode(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_input(tmp_path / "in.txt", ["a b c"])
    shapes = {}
    for flag in ("--all", "--top", "--average", "--layers=0,2"):
        output = tmp_path / f"{flag.strip('-').replace('=', '').replace(',', '_')}.hdf5"
        assert run(capsys, "embed", source, output, "--model", model_dir, "--quiet", flag)[0] == 0
        with h5py.File(output, "r") as handle:
            shapes[flag] = handle["0"].shape
    assert shapes == {"--all": (3, 3, 16), "--top": (3, 16), "--average": (3, 16), "--layers=0,2": (2, 3, 16)}


def test_embed_with_explicit_files_equals_model_dir(
    tmp_path: Path, tiny_model_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", LINES[:3])
    options, weights = tiny_model_files
    first, second = tmp_path / "a.hdf5", tmp_path / "b.hdf5"
    assert run(capsys, "embed", source, first, "--model", options.parent, "--quiet")[0] == 0
    assert run(capsys, "embed", source, second, "--options-file", options, "--weight-file", weights, "--quiet")[0] == 0
    with h5py.File(first, "r") as a, h5py.File(second, "r") as b:
        assert set(a) == set(b)
        for key in ("0", "1", "2"):
            np.testing.assert_array_equal(a[key][()], b[key][()])


def test_embed_forget_sentences(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_input(tmp_path / "in.txt", LINES)
    output = tmp_path / "out.hdf5"
    assert run(capsys, "embed", source, output, "--model", model_dir, "--quiet", "--forget-sentences")[0] == 0
    with h5py.File(output, "r") as handle:
        assert set(handle.keys()) == {str(i) for i in range(len(LINES))}


def test_embed_sentence_keys(
    tmp_path: Path, model_dir: Path, embedder: ElmoEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = LINES[:4]
    source = write_input(tmp_path / "in.txt", lines)
    output = tmp_path / "out.hdf5"
    assert run(capsys, "embed", source, output, "--model", model_dir, "--quiet", "--use-sentence-keys")[0] == 0
    with h5py.File(output, "r") as handle:
        assert set(handle.keys()) == {line.strip() for line in lines}
        for line, array in zip(lines, expected_arrays(embedder, lines, batch_size=64), strict=True):
            np.testing.assert_array_equal(handle[line.strip()][()], array)


def test_embed_stateful_equals_stateful_embedder(
    tmp_path: Path, tiny_model_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", LINES)
    output = tmp_path / "out.hdf5"
    argv = [
        "embed",
        source,
        output,
        "--model",
        tiny_model_files[0].parent,
        "--quiet",
        "--stateful",
        "--batch-size",
        "2",
    ]
    assert run(capsys, *argv)[0] == 0
    stateful = ElmoEmbedder(*tiny_model_files, stateful=True)
    with h5py.File(output, "r") as handle:
        for i, array in enumerate(expected_arrays(stateful, LINES, batch_size=2, sort_batches=1)):
            np.testing.assert_array_equal(handle[str(i)][()], array)


def before_each_batch(monkeypatch: pytest.MonkeyPatch, hook: Callable[[int, list[list[str]]], object]) -> None:
    """Call ``hook(number, batch)`` before the biLM runner embeds its ``number``-th batch (from 1)."""
    original = BiLmRunner.run
    numbers = itertools.count(1)

    def spied(self: BiLmRunner, batch: list[list[str]], grad: bool = False) -> BiLmOutput:
        hook(next(numbers), batch)
        return original(self, batch)

    monkeypatch.setattr(BiLmRunner, "run", spied)


def test_embed_streams_batch_by_batch(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    before_each_batch(monkeypatch, lambda number, batch: sizes.append(len(batch)))
    source = write_input(tmp_path / "in.txt", [f"s {i}" for i in range(10)])
    assert (
        run(capsys, "embed", source, tmp_path / "out.hdf5", "--model", model_dir, "--quiet", "--batch-size", "4")[0]
        == 0
    )
    assert sizes == [4, 4, 2]


def test_embed_sorts_lines_by_length_within_windows(
    tmp_path: Path,
    model_dir: Path,
    embedder: ElmoEmbedder,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches: list[list[int]] = []
    before_each_batch(monkeypatch, lambda number, batch: batches.append([len(tokens) for tokens in batch]))
    lines = [" ".join(["w"] * n) for n in (5, 1, 4, 2, 6, 3, 7)]
    source = write_input(tmp_path / "in.txt", lines)
    flags = ["--model", model_dir, "--quiet", "--batch-size", "2"]
    assert run(capsys, "embed", source, tmp_path / "sorted.hdf5", *flags, "--sort-batches", "2")[0] == 0
    assert batches == [[1, 2], [4, 5], [3, 6], [7]]  # windows of 4 lines, batched by length
    batches.clear()
    assert run(capsys, "embed", source, tmp_path / "plain.hdf5", *flags, "--sort-batches", "1")[0] == 0
    assert batches == [[5, 1], [4, 2], [6, 3], [7]]
    with h5py.File(tmp_path / "sorted.hdf5", "r") as by_length, h5py.File(tmp_path / "plain.hdf5", "r") as plain:
        assert json.loads(by_length["sentence_to_index"].asstr()[0]) == {line: str(i) for i, line in enumerate(lines)}
        sorted_arrays = [by_length[str(i)][()] for i in range(len(lines))]
        plain_arrays = [plain[str(i)][()] for i in range(len(lines))]
    # the tiny model's widths are not multiples of the vector width: other batches, float32 rounding
    # only, checked against a float64 evaluation
    assert_as_accurate(sorted_arrays, plain_arrays, float64_arrays(embedder, lines))


def test_embed_progress_on_stderr_and_quiet(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", LINES)
    code, out, err = run(capsys, "embed", source, tmp_path / "a.hdf5", "--model", model_dir)
    assert code == 0 and out == ""
    assert "sentences/s" in err and f"wrote {len(LINES)} sentences" in err
    assert run(capsys, "embed", source, tmp_path / "b.hdf5", "--model", model_dir, "--quiet")[1:] == ("", "")


def test_embed_replaces_an_existing_output_on_success(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", LINES[:2])
    output = tmp_path / "out.hdf5"
    output.write_bytes(b"old")
    assert run(capsys, "embed", source, output, "--model", model_dir, "--quiet")[0] == 0
    with h5py.File(output, "r") as handle:
        assert set(handle) == {"0", "1", "sentence_to_index"}


# --------------------------------------------------------------------------------------------
# embed: reading the input


def test_read_lines_universal_newlines_bom_and_strip(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes("\ufeffa b\r\n c \rd\n\n  e\r".encode())
    assert [(line.number, line.text) for line in embed.read_lines(path)] == [
        (1, "a b"),
        (2, "c"),
        (3, "d"),
        (4, ""),
        (5, "e"),
    ]


def test_read_lines_matches_python_text_mode(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes("x\r\r\ny\x85z\u2028w\n  \nlast".encode())
    with path.open(encoding="utf-8") as handle:  # what allennlp iterates
        expected = [line.strip() for line in handle]
    assert [line.text for line in embed.read_lines(path)] == expected


# --------------------------------------------------------------------------------------------
# embed: bad input leaves no file and keeps an existing one


@pytest.fixture
def existing_output(tmp_path: Path) -> Path:
    output = tmp_path / "out.hdf5"
    output.write_bytes(b"precious")
    return output


def assert_untouched(output: Path) -> None:
    assert output.read_bytes() == b"precious"
    assert leftovers(output.parent) == []


@pytest.mark.parametrize("blank", ["", "   ", "\t \u3000"])
def test_embed_empty_lines(
    tmp_path: Path, model_dir: Path, existing_output: Path, capsys: pytest.CaptureFixture[str], blank: str
) -> None:
    source = write_input(tmp_path / "in.txt", ["a", blank, "b", "c", blank])
    code, out, err = run(capsys, "embed", source, existing_output, "--model", model_dir)
    assert code == 2 and out == ""
    assert_one_line_error(err, "in.txt", "2 empty lines at lines 2, 5")
    assert_untouched(existing_output)


def test_embed_empty_lines_listing_is_capped(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", ["a"] + [""] * 25)
    code, _, err = run(capsys, "embed", source, tmp_path / "out.hdf5", "--model", model_dir)
    assert code == 2
    assert_one_line_error(err, "25 empty lines at lines 2, 3,", "11 and 15 more")
    assert not (tmp_path / "out.hdf5").exists()


def test_embed_invalid_utf8(
    tmp_path: Path, model_dir: Path, existing_output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(b"good line\nstill good\nbad \xff byte\nfine\n")
    code, _, err = run(capsys, "embed", source, existing_output, "--model", model_dir)
    assert code == 2
    assert_one_line_error(err, "line 3, column 5", "UTF-8")
    assert_untouched(existing_output)


def test_embed_latin1_file(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes("ok\r\nnaïve café\r\n".encode("latin-1"))
    output = tmp_path / "out.hdf5"
    code, _, err = run(capsys, "embed", source, output, "--model", model_dir)
    assert code == 2
    assert_one_line_error(err, "line 2, column 3")
    assert not output.exists() and leftovers(tmp_path) == []


def test_embed_fp16_on_a_cpu_is_a_usage_error(
    tmp_path: Path, model_dir: Path, existing_output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", ["a b", "c"])
    code, _, err = run(capsys, "embed", source, existing_output, "--model", model_dir, "--precision", "fp16")
    assert code == 2
    assert_one_line_error(err, "--precision fp16", "CUDA")
    assert_untouched(existing_output)


def test_embed_empty_file(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_input(tmp_path / "in.txt", [])
    code, _, err = run(capsys, "embed", source, tmp_path / "out.hdf5", "--model", model_dir)
    assert code == 2
    assert_one_line_error(err, "no sentences")


def test_embed_missing_input(
    tmp_path: Path, model_dir: Path, existing_output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "embed", tmp_path / "nope.txt", existing_output, "--model", model_dir)
    assert code == 2
    assert_one_line_error(err, "input file not found", "nope.txt")
    assert_untouched(existing_output)


def test_embed_input_is_a_directory(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "embed", tmp_path, tmp_path / "out.hdf5", "--model", model_dir)
    assert code == 2
    assert_one_line_error(err, "is a directory")


def test_embed_unreadable_input(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_input(tmp_path / "in.txt", ["a"])
    original = Path.open

    def forbidden(self: Path, *args: object, **kwargs: object) -> object:
        if self == source:
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", forbidden)  # chmod does not stop root
    code, _, err = run(capsys, "embed", source, tmp_path / "out.hdf5", "--model", model_dir)
    assert code == 2
    assert_one_line_error(err, f"input file {source}: Permission denied")
    assert not (tmp_path / "out.hdf5").exists()


def test_embed_missing_output_directory(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_input(tmp_path / "in.txt", ["a"])
    code, _, err = run(capsys, "embed", source, tmp_path / "nowhere" / "out.hdf5", "--model", model_dir)
    assert code == 2
    assert_one_line_error(err, "output directory does not exist", "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_embed_output_is_the_input(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_input(tmp_path / "in.txt", ["a"])
    code, _, err = run(capsys, "embed", source, source, "--model", model_dir)
    assert code == 2
    assert_one_line_error(err, "is the input file")
    assert source.read_text(encoding="utf-8") == "a\n"


@pytest.mark.parametrize(
    ("model_args", "fragment"),
    [
        (["--model", "no-such-model"], "unknown ELMo model 'no-such-model'"),
        (["--options-file", "options.json"], "--options-file needs --weight-file"),
        (["--model", "small", "--options-file", "o.json", "--weight-file", "w.hdf5"], "not both"),
        (["--options-file", "missing.json", "--weight-file", "missing.hdf5"], "ELMo file not found: missing."),
    ],
)
def test_embed_bad_model(
    tmp_path: Path,
    existing_output: Path,
    capsys: pytest.CaptureFixture[str],
    model_args: list[str],
    fragment: str,
) -> None:
    source = write_input(tmp_path / "in.txt", ["a"])
    code, _, err = run(capsys, "embed", source, existing_output, *model_args)
    assert code == 2
    assert_one_line_error(err, fragment)
    assert_untouched(existing_output)


def test_embed_malformed_model_files(tmp_path: Path, existing_output: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model"
    write_random_model(model)
    (model / "options.json").write_text("{not json", encoding="utf-8")
    source = write_input(tmp_path / "in.txt", ["a"])
    code, _, err = run(capsys, "embed", source, existing_output, "--model", model)
    assert code == 2
    assert_one_line_error(err, "options.json", "not a valid JSON")
    assert_untouched(existing_output)


def test_embed_layers_out_of_range(
    tmp_path: Path, model_dir: Path, existing_output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", ["a"])
    code, _, err = run(capsys, "embed", source, existing_output, "--model", model_dir, "--layers", "0,3")
    assert code == 2
    assert_one_line_error(err, "--layers 0,3", "layer 3 is out of range", "3 layers")
    assert_untouched(existing_output)


@pytest.mark.parametrize(
    "flags",
    [["--layers", "a,b"], ["--batch-size", "0"], ["--top", "--average"], ["--sort-batches", "0"]],
)
def test_embed_usage_errors(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], flags: list[str]
) -> None:
    source = write_input(tmp_path / "in.txt", ["a"])
    code, _, err = run(capsys, "embed", source, tmp_path / "out.hdf5", "--model", model_dir, *flags)
    assert code == 2
    assert "usage: flair-elmo embed" in err and "error:" in err
    assert not (tmp_path / "out.hdf5").exists()


def test_embed_stateful_cannot_sort(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_input(tmp_path / "in.txt", ["a"])
    flags = ["--model", model_dir, "--stateful", "--sort-batches", "2"]
    code, _, err = run(capsys, "embed", source, tmp_path / "out.hdf5", *flags)
    assert code == 2
    assert_one_line_error(err, "--stateful needs --sort-batches 1")
    assert not (tmp_path / "out.hdf5").exists()


def test_embed_duplicate_sentence_keys(
    tmp_path: Path, model_dir: Path, existing_output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", ["a b", "c", " a   b ", "a b"])
    code, _, err = run(capsys, "embed", source, existing_output, "--model", model_dir, "--use-sentence-keys")
    assert code == 2
    assert_one_line_error(err, "distinct sentences", "line 4 repeats line 1 ('a b')", "drop --use-sentence-keys")
    assert "line 3" not in err  # " a   b " strips to "a   b", another sentence, as in allennlp
    assert_untouched(existing_output)


def test_embed_sentence_keys_that_are_not_dataset_names(
    tmp_path: Path, model_dir: Path, existing_output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", ["and/or", "ok", "."])
    code, _, err = run(capsys, "embed", source, existing_output, "--model", model_dir, "--use-sentence-keys")
    assert code == 2
    assert_one_line_error(err, "lines 1, 3 cannot name an HDF5 dataset")
    assert_untouched(existing_output)
    # Without sentence keys the same file is fine.
    assert run(capsys, "embed", source, existing_output, "--model", model_dir, "--quiet")[0] == 0


def test_embed_cuda_device_without_cuda(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    source = write_input(tmp_path / "in.txt", ["a"])
    code, _, err = run(capsys, "embed", source, tmp_path / "out.hdf5", "--model", model_dir, "--cuda-device", "0")
    assert code == 2
    assert_one_line_error(err, "--cuda-device 0", "CUDA is not available")


# --------------------------------------------------------------------------------------------
# embed: failures and interruptions while writing


def fail_on_call(monkeypatch: pytest.MonkeyPatch, call: int, error: BaseException, directory: Path) -> None:
    """Make the ``call``-th batch raise ``error``, once the temporary file exists."""

    def failing(number: int, batch: list[list[str]]) -> None:
        if number == call:
            assert leftovers(directory), "the temporary output should exist by now"
            raise error

    before_each_batch(monkeypatch, failing)


@pytest.mark.parametrize(
    ("error", "code", "fragment"),
    [
        (KeyboardInterrupt(), 130, "error: interrupted"),
        (OSError(28, "No space left on device"), 1, "error: [Errno 28] No space left on device"),
        (ElmoFileError("weights.hdf5: broken"), 2, "error: weights.hdf5: broken"),
    ],
)
def test_embed_failure_mid_stream_leaves_nothing(
    tmp_path: Path,
    model_dir: Path,
    existing_output: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    code: int,
    fragment: str,
) -> None:
    fail_on_call(monkeypatch, 3, error, tmp_path)
    source = write_input(tmp_path / "in.txt", [f"s {i}" for i in range(20)])
    got, out, err = run(capsys, "embed", source, existing_output, "--model", model_dir, "--batch-size", "2", "--quiet")
    assert got == code and out == ""
    assert_one_line_error(err, fragment)
    assert_untouched(existing_output)


def test_embed_sigterm_mid_stream_leaves_nothing(
    tmp_path: Path,
    model_dir: Path,
    existing_output: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def terminated(number: int, batch: list[list[str]]) -> None:
        if number == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # recorded: the run stops after this batch

    before_each_batch(monkeypatch, terminated)
    before = signal.getsignal(signal.SIGTERM)
    source = write_input(tmp_path / "in.txt", [f"s {i}" for i in range(10)])
    code, _, err = run(capsys, "embed", source, existing_output, "--model", model_dir, "--batch-size", "2", "--quiet")
    assert code == 128 + signal.SIGTERM
    assert_one_line_error(err, "terminated (SIGTERM)")
    assert_untouched(existing_output)
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is restored


class SignalsWhenCollected:
    """Sends SIGTERM to this process from its destructor: the handler then runs inside ``__del__``,
    where Python only prints an exception ("Exception ignored in ...") and carries on."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # bytecodes inside __del__, where Python runs the pending handler
            pass


def test_a_signal_that_arrives_inside_a_destructor_is_not_swallowed(
    tmp_path: Path,
    model_dir: Path,
    existing_output: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def collecting(number: int, batch: list[list[str]]) -> None:
        calls.append(number)
        if number == 2:
            SignalsWhenCollected()  # collected at once

    before_each_batch(monkeypatch, collecting)
    source = write_input(tmp_path / "in.txt", [f"s {i}" for i in range(10)])
    code, _, err = run(capsys, "embed", source, existing_output, "--model", model_dir, "--batch-size", "2", "--quiet")
    assert code == 128 + signal.SIGTERM  # it used to write the whole output and exit 0
    assert_one_line_error(err, "terminated (SIGTERM)")
    assert_untouched(existing_output)
    assert len(calls) == 2  # stopped after the batch the signal arrived in


def test_embed_debug_shows_traceback(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "embed", tmp_path / "nope.txt", tmp_path / "out.hdf5", "--debug")
    assert code == 2
    assert "Traceback" in err and err.rstrip().endswith("error: input file not found: " + str(tmp_path / "nope.txt"))
    code, _, err = run(capsys, "--debug", "embed", tmp_path / "nope.txt", tmp_path / "out.hdf5")
    assert code == 2 and "Traceback" in err


# --------------------------------------------------------------------------------------------
# error table


def test_describe_error_table() -> None:
    assert errors.describe_error(errors.UsageError("bad")) == (2, "bad")
    assert errors.describe_error(errors.CLIError("failed")) == (1, "failed")
    assert errors.describe_error(ElmoFileError("f: x\ny")) == (2, "f: x y")
    assert errors.describe_error(ModelDownloadError("could not download")) == (1, "could not download")
    assert errors.describe_error(FileNotFoundError(2, "No such file or directory", "a.txt")) == (
        2,
        "a.txt: No such file or directory",
    )
    assert errors.describe_error(PermissionError(13, "Permission denied", "b")) == (1, "b: Permission denied")
    assert errors.describe_error(KeyboardInterrupt()) == (130, "interrupted")
    assert errors.describe_error(errors.Interrupted(signal.SIGTERM)) == (143, "terminated (SIGTERM)")
    assert errors.describe_error(RuntimeError("a bug")) is None


def test_unknown_exceptions_propagate(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(info, "run", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["info", "whatever"])


# --------------------------------------------------------------------------------------------
# help


@pytest.mark.parametrize("command", [[], ["embed"], ["info"], ["demo"]])
def test_help(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, err = run(capsys, *command, "--help")
    assert code == 0 and err == ""
    assert out.startswith(f"usage: flair-elmo {' '.join(command)}".rstrip())
    assert "examples:\n  flair-elmo " in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 2 and out == "" and "usage: flair-elmo" in err


def test_python_m_help_subprocess() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flair_elmo_modes", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: flair-elmo")
    for command in ("embed", "info", "demo", "train"):
        assert f"    {command} " in result.stdout


# --------------------------------------------------------------------------------------------
# info


def test_info_local_model(
    model_dir: Path, tiny_model_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "info", model_dir, "--json")
    assert code == 0 and err == ""
    info = json.loads(out)
    bilm = load_bilm(*tiny_model_files)
    options = bilm.options
    assert info["kind"] == "local"
    assert info["options_file"]["path"] == str(tiny_model_files[0])
    assert info["weight_file"] == {
        "path": str(tiny_model_files[1]),
        "exists": True,
        "bytes": tiny_model_files[1].stat().st_size,
    }
    assert info["parameters"] == sum(p.numel() for p in bilm.parameters())
    assert info["output_layers"] == options.n_layers + 1 and info["layer_dim"] == 2 * options.projection_dim
    assert info["architecture"]["filters"] == [list(f) for f in options.filters]
    assert info["architecture"]["n_highway"] == options.n_highway
    layer = 2 * options.projection_dim
    assert info["embedding_length"] == {
        "all": (options.n_layers + 1) * layer,
        "top": layer,
        "average": layer,
        "bottom": layer,
        "mix": layer,
    }

    code, text, _ = run(capsys, "info", model_dir)
    assert code == 0
    rows = dict(line.split("  ", 1) for line in text.splitlines())
    assert rows["parameters"].strip() == f"{info['parameters']:,}"
    assert rows["embedding length"].strip().startswith(f"all={3 * layer}, top={layer}, average={layer}")
    assert str(tiny_model_files[1]) in text


def test_info_options_file(tiny_model_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "info", tiny_model_files[0], "--json")
    info = json.loads(out)
    assert code == 0 and info["kind"] == "options file"
    assert info["weight_file"]["path"] == str(tiny_model_files[1])


def test_info_published_model_does_not_download(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import flair
    import flair.file_utils

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("info must not download")

    monkeypatch.setattr(flair, "cache_root", tmp_path)
    monkeypatch.setattr(flair.file_utils, "cached_path", no_network)
    monkeypatch.setattr(flair.file_utils, "get_from_cache", no_network)
    code, out, _ = run(capsys, "info", "original", "--json")
    info = json.loads(out)
    assert code == 0 and info["kind"] == "published"
    assert info["options_file"]["exists"] is False and info["options_file"]["url"].startswith("https://")
    assert info["architecture"]["source"] == "file name" and info["architecture"]["lstm_layers"] == 2
    assert info["embedding_length"]["all"] == 3 * 2 * info["architecture"]["projection_dim"]
    assert info["parameters"] is None
    code, text, _ = run(capsys, "info", "original")
    assert code == 0 and "not cached" in text and str(tmp_path / "embeddings") in text

    # Once the options file is cached, info reads it (and still does not download the weights).
    options_url = models.PUBLISHED_MODELS["small"][0]
    cached = tmp_path / "embeddings" / "elmo-small" / options_url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    write_random_model(tmp_path / "m")
    cached.write_bytes((tmp_path / "m" / "options.json").read_bytes())
    info = json.loads(run(capsys, "info", "small", "--json")[1])
    assert info["options_file"]["exists"] is True and info["weight_file"]["exists"] is False
    assert info["architecture"]["source"] == "options.json" and info["parameters"] > 0


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_info_refuses_non_finite_options_instead_of_printing_invalid_json(
    value: str, tiny_model_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = json.loads(tiny_model_files[0].read_text())
    raw["lstm"]["cell_clip"] = "PLACEHOLDER"
    options_file = tmp_path / "options.json"
    options_file.write_text(json.dumps(raw).replace('"PLACEHOLDER"', value))
    code, out, err = run(capsys, "info", options_file, "--json")
    assert code == 2 and out == ""
    assert_one_line_error(err, str(options_file), "'lstm.cell_clip'", "expected a finite number")


def test_info_unknown_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "info", str(tmp_path / "nothing"))
    assert code == 2 and out == ""
    assert_one_line_error(err, "unknown model", "original")


# --------------------------------------------------------------------------------------------
# demo


def test_demo_on_a_model_dir(model_dir: Path, embedder: ElmoEmbedder, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo", "--model", model_dir, "--json")
    assert code == 0 and err == ""
    results = json.loads(out)
    dim = embedder.dim
    seed = demo.SEED_SENTENCE.split()
    assert results["layer_shapes"] == [[len(seed), dim]] * embedder.num_layers
    assert results["embedding_length"] == {"all": embedder.num_layers * dim, "top": dim, "average": dim}
    tokens = demo.CELL_SENTENCE.split()
    positions = results["cell_positions"]
    assert [tokens[i] for i in positions] == ["cell"] * 3
    layers = embedder.embed_sentence(tokens).astype(np.float64)  # the demo's run: bitwise its vectors
    for layer, row in zip(layers, results["cell_similarity"], strict=True):
        vectors = [layer[i] / np.linalg.norm(layer[i]) for i in positions]
        expected = [vectors[0] @ vectors[1], vectors[0] @ vectors[2], vectors[1] @ vectors[2]]
        np.testing.assert_allclose(row, expected, rtol=0, atol=cosine_tolerance(dim))
    # characters only: three copies of one vector, whose cosine is 1 up to float64 rounding
    assert results["cell_similarity"][0] == pytest.approx([1.0, 1.0, 1.0], abs=cosine_tolerance(dim))
    # The LSTM layers see the context. A cosine within 1e-6 of 1 would mean vectors within ~1.4e-3
    # (sqrt(2e-6)) of each other in direction: 10^4 float32 roundings, so not all three may be.
    assert not all(math.isclose(value, 1.0, abs_tol=1e-6) for value in results["cell_similarity"][-1])

    code, text, _ = run(capsys, "demo", "--model", model_dir)
    assert code == 0
    assert f"layer 0 (characters): ({len(seed)}, {dim})" in text
    assert "prison cell ~ cell phone" in text
    assert f"{results['cell_similarity'][1][0]:.4f}" in text


@pytest.fixture
def shipped_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "shipped"
    directory.mkdir()
    monkeypatch.setattr(models, "SHIPPED_DIR", directory)
    return directory


def test_demo_default_needs_the_shipped_model(shipped_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo")
    assert code == 2 and out == ""
    assert_one_line_error(err, f"the shipped model {models.SHIPPED_MODEL!r} is not installed", "--model")


def test_demo_defaults_to_the_shipped_model(shipped_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_random_model(shipped_dir / models.SHIPPED_MODEL, seed=3)
    code, out, _ = run(capsys, "demo", "--json")
    assert code == 0 and json.loads(out)["model"] == models.SHIPPED_MODEL
    info = json.loads(run(capsys, "info", models.SHIPPED_MODEL, "--json")[1])
    assert info["kind"] == "shipped" and info["weight_file"]["exists"] is True


def test_embed_and_info_default_to_the_default_model_of_allennlp_and_flair(
    tmp_path: Path,
    tiny_model_files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flair_elmo_modes.embeddings import ELMoEmbeddings

    assert models.DEFAULT_MODEL == "original"
    assert inspect.signature(ELMoEmbeddings).parameters["model"].default == models.DEFAULT_MODEL
    monkeypatch.setattr(models, "flair_cache_root", lambda: tmp_path / "cache")
    cached = cache_as_published(tmp_path / "cache", models.DEFAULT_MODEL, tiny_model_files)  # no download
    source = write_input(tmp_path / "in.txt", ["a b", "c"])
    assert run(capsys, "embed", source, tmp_path / "out.hdf5", "--quiet") == (0, "", "")
    expected = expected_arrays(ElmoEmbedder(*tiny_model_files), ["a b", "c"], batch_size=64)
    with h5py.File(tmp_path / "out.hdf5", "r") as handle:
        np.testing.assert_array_equal(handle["0"][()], expected[0])
    info = json.loads(run(capsys, "info", "--json")[1])
    assert info["model"] == models.DEFAULT_MODEL and info["kind"] == "published"
    assert info["options_file"]["path"] == str(cached[0]) and info["options_file"]["exists"] is True


@pytest.mark.skipif(
    not (models.SHIPPED_DIR / models.SHIPPED_MODEL / "options.json").is_file(), reason="shipped model not built yet"
)
def test_demo_on_the_shipped_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "--json")
    results = json.loads(out)
    assert code == 0 and results["model"] == models.SHIPPED_MODEL
    dim = results["layer_shapes"][0][1]
    # characters only: three copies of one vector, whose cosine is 1 up to float64 rounding
    assert results["cell_similarity"][0] == pytest.approx([1.0, 1.0, 1.0], abs=cosine_tolerance(dim))


# --------------------------------------------------------------------------------------------
# train


@pytest.fixture
def fake_training(monkeypatch: pytest.MonkeyPatch) -> list[argparse.Namespace]:
    calls: list[argparse.Namespace] = []
    module = types.ModuleType(train.TRAIN_MODULE)
    module.__doc__ = "Train an ELMo biLM."

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("corpus")
        parser.add_argument("--epochs", type=int, default=1)

    def run_training(args: argparse.Namespace) -> int:
        calls.append(args)
        return 0

    module.add_arguments = add_arguments  # type: ignore[attr-defined]
    module.run = run_training  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, train.TRAIN_MODULE, module)
    return calls


def test_train_delegates_to_the_training_module(
    fake_training: list[argparse.Namespace], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "train", "corpus.txt", "--epochs", "3")[0] == 0
    assert (fake_training[0].corpus, fake_training[0].epochs) == ("corpus.txt", 3)
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "usage: flair-elmo train" in out and "--epochs" in out


def test_train_without_the_training_module(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, train.TRAIN_MODULE, None)  # makes the import fail
    code, out, err = run(capsys, "train", "corpus.txt")
    assert code == 1 and out == ""
    assert_one_line_error(err, "the train command is not available", train.TRAIN_MODULE)
    # The other commands do not need it.
    assert run(capsys, "--help")[0] == 0


# --------------------------------------------------------------------------------------------
# signals from outside: one mechanism for embed and train

SHIPPED_OPTIONS = models.SHIPPED_DIR / models.SHIPPED_MODEL / "options.json"
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


def assert_stopped_by(process: subprocess.Popen[str], err: str, signum: int) -> None:
    assert process.returncode == 128 + signum, err
    message = "error: interrupted" if signum == signal.SIGINT else f"error: terminated ({signal.Signals(signum).name})"
    assert err.rstrip().endswith(message), err
    assert err.count("error:") == 1 and "Traceback" not in err and "Exception ignored" not in err


@posix_signals
@needs_shipped_model
@pytest.mark.parametrize(
    ("signum", "delay"),
    [
        (signal.SIGINT, 0.2),
        (signal.SIGTERM, 0.2),
        (signal.SIGHUP, 0.2),
        (signal.SIGTERM, 1.0),
        (signal.SIGHUP, 1.0),
        (signal.SIGINT, 2.0),
        (signal.SIGTERM, 2.0),
    ],
    ids=lambda value: signal.Signals(value).name if isinstance(value, int) else f"{value}s",
)
def test_a_signal_stops_embed_cleanly_wherever_it_arrives(tmp_path: Path, signum: int, delay: float) -> None:
    source = long_input(tmp_path / "in.txt")
    output = tmp_path / "out.hdf5"
    output.write_bytes(b"precious")
    process = start_cli("embed", source, output, "--model", models.SHIPPED_MODEL)
    try:
        wait_for_temp(process, tmp_path)
        time.sleep(delay)
        assert process.poll() is None, "the run ended before the signal was sent"
        process.send_signal(signum)
    finally:
        out, err = finish(process)
    assert_stopped_by(process, err, signum)
    assert out == ""
    assert_untouched(output)


@posix_signals
@needs_shipped_model
def test_a_later_run_removes_the_temporary_file_a_killed_run_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out.hdf5"
    process = start_cli("embed", long_input(tmp_path / "long.txt"), output, "--model", models.SHIPPED_MODEL)
    try:
        wait_for_temp(process, tmp_path)
        process.kill()  # SIGKILL: no cleanup is possible
    finally:
        finish(process)
    left = leftovers(tmp_path)
    assert len(left) == 1 and left[0].startswith(".out.hdf5.")
    other = tmp_path / ".other.hdf5.0123abcd.tmp"  # another target's temp is not ours to remove
    other.write_bytes(b"x")
    source = write_input(tmp_path / "in.txt", ["a b"])
    assert run(capsys, "embed", source, output, "--model", models.SHIPPED_MODEL, "--quiet")[0] == 0
    assert leftovers(tmp_path) == [other.name] and h5py.is_hdf5(output)


TINY_TRAIN = ("--char-dim", "4", "--filters", "1:4,2:8", "--cell-dim", "16", "--projection-dim", "8")
ONE_STEP = ("--max-steps", "1", "--quiet")


def write_training_text(path: Path, sentences: int = 300) -> Path:
    words = "the a cat dog sat ran on under mat rug".split()
    lines = [" ".join(words[(i * 3 + j) % len(words)] for j in range(4 + i % 5)) for i in range(sentences)]
    return write_input(path, lines)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()}


@posix_signals
@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "delay"),
    [(signal.SIGTERM, 0.2), (signal.SIGHUP, 1.0), (signal.SIGINT, 2.0)],
    ids=["SIGTERM-0.2s", "SIGHUP-1.0s", "SIGINT-2.0s"],
)
def test_a_signal_stops_train_cleanly_and_keeps_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signum: int, delay: float
) -> None:
    corpus, out = write_training_text(tmp_path / "train.txt"), tmp_path / "run"
    assert run(capsys, "train", corpus, "-o", out, *TINY_TRAIN, "--max-steps", "2", "--quiet")[0] == 0
    model_files, result = snapshot(out / "model"), (out / "result.json").read_bytes()
    # Resumed for ever: a checkpoint after every epoch (a few steps), so signals also meet checkpoint writes.
    process = start_cli("train", corpus, "-o", out, *TINY_TRAIN, "--epochs", "100000", "--no-progress")
    try:
        assert process.stderr is not None
        for line in process.stderr:  # the trainer's log lines are on stderr
            if line.startswith("resumed from"):
                break
        else:
            raise AssertionError(f"the run never resumed: {finish(process)}")
        time.sleep(delay)
        assert process.poll() is None, "the run ended before the signal was sent"
        process.send_signal(signum)
    finally:
        out_text, err = finish(process)
    assert_stopped_by(process, err, signum)
    assert out_text == ""  # no result JSON: the run did not finish
    assert snapshot(out / "model") == model_files and (out / "result.json").read_bytes() == result
    import torch

    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)  # complete: the old or a newer one
    assert checkpoint["progress"]["step"] >= 2
    assert sorted(path.name for path in out.iterdir()) == ["checkpoint.pt", "model", "result.json"]


@pytest.mark.slow
def test_train_removes_the_temporary_files_a_killed_run_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus, out = write_training_text(tmp_path / "train.txt", 40), tmp_path / "run"
    out.mkdir()
    stale = [out / ".checkpoint.pt.0123abcd.tmp", out / ".result.json.89abcdef.tmp"]
    for path in stale:
        path.write_bytes(b"half written")
    staging = out / ".model.00ff00ff.tmp"
    staging.mkdir()
    (staging / "weights.hdf5").write_bytes(b"half written")
    assert run(capsys, "train", corpus, "-o", out, *TINY_TRAIN, "--max-steps", "1", "--quiet")[0] == 0
    assert sorted(path.name for path in out.iterdir()) == ["checkpoint.pt", "model", "result.json"]


# --------------------------------------------------------------------------------------------
# write errors: one line naming the target, the old output kept, no temporary file


def test_embed_on_a_full_disk_is_one_line_naming_the_output(
    tmp_path: Path,
    model_dir: Path,
    existing_output: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    full_disk(monkeypatch, capacity=20_000)
    source = write_input(tmp_path / "in.txt", [f"sentence {i} with a few words" for i in range(300)])
    code, out, err = run(capsys, "embed", source, existing_output, "--model", model_dir, "--quiet")
    assert code == 1 and out == ""
    assert_one_line_error(err, f"error: cannot write {existing_output}: No space left on device")
    assert_untouched(existing_output)


def test_embed_hdf5_error_at_close_is_one_line_naming_the_output(
    tmp_path: Path,
    model_dir: Path,
    existing_output: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_close = h5py.File.close

    def failing_close(self: h5py.File) -> None:  # as h5py does when the last flush fails
        written = self.id.valid and self.mode == "r+"  # not the model's weights, read before
        real_close(self)
        if written:
            raise RuntimeError(
                "Can't decrement id ref count (file write failed: errno = 28, 'No space left on device')"
            )

    monkeypatch.setattr(h5py.File, "close", failing_close)
    source = write_input(tmp_path / "in.txt", LINES)
    code, _, err = run(capsys, "embed", source, existing_output, "--model", model_dir, "--quiet")
    assert code == 1
    assert_one_line_error(err, f"error: cannot write {existing_output}: Can't decrement id ref count")
    assert_untouched(existing_output)


def limit_file_size(limit: int) -> None:
    """In the child: writes past ``limit`` bytes fail with EFBIG (a real write error, as a full disk)."""
    import resource

    default_signals()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.skipif(os.name != "posix", reason="POSIX resource limits")
def test_embed_past_a_real_write_error_is_one_line_not_a_crash(tmp_path: Path, model_dir: Path) -> None:
    """A real failing write(2), here from RLIMIT_FSIZE: HDF5 used to print hundreds of tracebacks and segfault."""
    source = write_input(tmp_path / "in.txt", [f"sentence {i} with a few more words in it" for i in range(400)])
    output = tmp_path / "out.hdf5"
    output.write_bytes(b"precious")
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "flair_elmo_modes",
            "embed",
            str(source),
            str(output),
            "--model",
            str(model_dir),
            "--quiet",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: limit_file_size(100_000),
    )
    assert process.returncode == 1, process.stderr[-3000:]
    assert process.stderr == f"error: cannot write {output}: File too large\n"
    assert_untouched(output)


@pytest.mark.skipif(os.name != "posix", reason="POSIX resource limits")
@pytest.mark.slow
def test_train_checkpoint_past_a_real_write_error_is_one_line(tmp_path: Path) -> None:
    corpus, out = write_training_text(tmp_path / "train.txt", 40), tmp_path / "run"
    process = subprocess.run(
        [sys.executable, "-m", "flair_elmo_modes", "train", str(corpus), "-o", str(out), *TINY_TRAIN, *ONE_STEP],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: limit_file_size(20_000),
    )
    assert process.returncode == 1, process.stderr[-3000:]
    assert process.stderr == f"error: cannot write {out / 'checkpoint.pt'}: File too large\n"
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_train_checkpoint_on_a_full_disk_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, out = write_training_text(tmp_path / "train.txt", 40), tmp_path / "run"
    full_disk(monkeypatch, capacity=10_000)
    code, stdout, err = run(capsys, "train", corpus, "-o", out, *TINY_TRAIN, "--max-steps", "1", "--quiet")
    assert code == 1 and stdout == ""
    assert_one_line_error(err, f"error: cannot write {out / 'checkpoint.pt'}: No space left on device")
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_train_export_on_a_full_disk_is_one_line_and_keeps_the_old_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, out = write_training_text(tmp_path / "train.txt", 40), tmp_path / "run"
    assert run(capsys, "train", corpus, "-o", out, *TINY_TRAIN, "--max-steps", "1", "--quiet")[0] == 0
    model_files = snapshot(out / "model")
    full_disk(monkeypatch, capacity=0, only=lambda path: path.parent.name.startswith(".model."))
    code, _, err = run(capsys, "train", corpus, "-o", out, *TINY_TRAIN, "--max-steps", "2", "--quiet")
    assert code == 1
    assert_one_line_error(err, f"error: cannot write {out / 'model'}: No space left on device")
    assert snapshot(out / "model") == model_files
    assert sorted(path.name for path in out.iterdir()) == ["checkpoint.pt", "model", "result.json"]


# --------------------------------------------------------------------------------------------
# out of memory: one line


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("std::bad_alloc"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you "
            "tried to allocate 10737418240 bytes. Error code 12 (Cannot allocate memory)"
        ),
        MemoryError(),
    ],
    ids=["bad_alloc", "torch", "MemoryError"],
)
@pytest.mark.slow
def test_train_out_of_memory_is_one_line_naming_the_options_that_bound_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    from flair_elmo_modes.training import trainer

    def allocation_fails(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(trainer, "_train_step", allocation_fails)
    corpus = write_training_text(tmp_path / "train.txt", 40)
    code, _, err = run(capsys, "train", corpus, "-o", tmp_path / "run", *TINY_TRAIN, "--quiet")
    assert code == 1
    assert_one_line_error(
        err, "out of memory while training", "--batch-size (now 64)", "--max-sentence-tokens (now 400)"
    )


def test_embed_out_of_memory_is_one_line(
    tmp_path: Path,
    model_dir: Path,
    existing_output: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fail_on_call(monkeypatch, 1, RuntimeError("std::bad_alloc"), tmp_path)
    source = write_input(tmp_path / "in.txt", LINES)
    code, _, err = run(capsys, "embed", source, existing_output, "--model", model_dir, "--quiet")
    assert code == 1
    assert_one_line_error(err, "error: out of memory (std::bad_alloc); try a smaller --batch-size")
    assert_untouched(existing_output)


def test_describe_error_knows_allocation_failures_and_write_errors() -> None:
    from flair_elmo_modes.atomic import WriteError

    assert errors.describe_error(MemoryError()) == (1, "out of memory; try a smaller --batch-size")
    assert errors.describe_error(WriteError("out.hdf5", "No space left on device", errno.ENOSPC)) == (
        1,
        "cannot write out.hdf5: No space left on device",
    )
    assert errors.describe_error(RuntimeError("std::bad_alloc"))[0] == 1  # type: ignore[index]
    assert errors.describe_error(RuntimeError("shapes do not match")) is None  # still a bug


# --------------------------------------------------------------------------------------------
# the trainer's log lines on stderr


@pytest.mark.slow
def test_train_shows_the_trainer_log_lines_on_stderr_and_quiet_hides_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus, dev, out = (
        write_training_text(tmp_path / "train.txt", 40),
        write_training_text(tmp_path / "dev.txt", 8),
        tmp_path / "run",
    )
    flags = ["--dev", dev, *TINY_TRAIN, "--no-progress"]
    code, stdout, err = run(capsys, "train", corpus, "-o", out, *flags, "--epochs", "2")
    assert code == 0 and json.loads(stdout)["steps"] == 2
    lines = err.splitlines()
    assert lines[0].startswith("training text: 1 shard(s), 40 sentences")
    assert [line.split(":")[0] for line in lines[1:3]] == ["epoch 1", "epoch 2"] and "dev_forward=" in lines[1]
    assert lines[3].startswith(f"exported {out / 'model'}") and len(lines) == 4
    code, stdout, err = run(capsys, "train", corpus, "-o", out, *flags, "--epochs", "2")
    assert code == 0 and f"resumed from {out / 'checkpoint.pt'} at epoch 3, step 2" in err
    code, stdout, err = run(capsys, "train", corpus, "-o", out, *flags, "--epochs", "3", "--quiet")
    assert code == 0 and err == "" and json.loads(stdout)["steps"] == 3


# --------------------------------------------------------------------------------------------
# allennlp's command line: --vocab-path, --file-friendly-logging, --include-package; huge numbers


def test_embed_vocab_path_caches_the_vocabulary_and_gives_the_same_vectors(
    tmp_path: Path,
    model_dir: Path,
    embedder: ElmoEmbedder,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = write_input(tmp_path / "in.txt", LINES)
    vocabulary = tmp_path / "tokens.txt"
    words = sorted({token for line in LINES for token in line.split()})
    vocabulary.write_text("".join(f"{word} 3\n" for word in words[::2]) + "\n@@UNKNOWN@@\n", encoding="utf-8")
    embedders: list[ElmoEmbedder] = []
    real_cache_tokens = ElmoEmbedder.cache_tokens

    def recording(self: ElmoEmbedder, tokens: object) -> int:
        embedders.append(self)
        return real_cache_tokens(self, tokens)  # type: ignore[arg-type]

    monkeypatch.setattr(ElmoEmbedder, "cache_tokens", recording)
    flags = ["--model", model_dir, "--quiet"]
    assert run(capsys, "embed", source, tmp_path / "plain.hdf5", *flags)[0] == 0
    assert embedders == []
    assert run(capsys, "embed", source, tmp_path / "cached.hdf5", *flags, "--vocab-path", vocabulary)[0] == 0
    cache = embedders[0].bilm.char_encoder.token_cache
    assert cache is not None and len(cache) == len(words[::2]) + 1 and cache.hits > 0 and cache.misses > 0
    with h5py.File(tmp_path / "plain.hdf5", "r") as plain, h5py.File(tmp_path / "cached.hdf5", "r") as cached:
        assert set(plain) == set(cached)
        keys = [str(i) for i in range(len(LINES)) if str(i) in plain]
        assert set(keys) == set(plain) - {"sentence_to_index"}
        cached_arrays, plain_arrays = [cached[key][()] for key in keys], [plain[key][()] for key in keys]
    # the cache encoded its tokens in another batch: float32 rounding only, against float64
    exact = float64_arrays(embedder, LINES)
    assert_as_accurate(cached_arrays, plain_arrays, [exact[int(key)] for key in keys])


@pytest.mark.parametrize(("content", "fragment"), [(None, "vocabulary file not found"), ("\n \n", "no tokens")])
def test_embed_bad_vocab_path(
    tmp_path: Path,
    model_dir: Path,
    existing_output: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    fragment: str,
) -> None:
    vocabulary = tmp_path / "tokens.txt"
    if content is not None:
        vocabulary.write_text(content, encoding="utf-8")
    source = write_input(tmp_path / "in.txt", ["a"])
    code, _, err = run(capsys, "embed", source, existing_output, "--model", model_dir, "--vocab-path", vocabulary)
    assert code == 2
    assert_one_line_error(err, "--vocab-path", fragment)
    assert_untouched(existing_output)


def test_embed_file_friendly_logging_prints_lines_without_carriage_returns(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", LINES)
    code, out, err = run(capsys, "embed", source, tmp_path / "a.hdf5", "--model", model_dir, "--file-friendly-logging")
    assert code == 0 and out == "" and "\r" not in err
    lines = err.splitlines()
    assert lines[-2] == f"embedding: {len(LINES)}/{len(LINES)} sentences (100%)" + lines[-2].split("(100%)")[1]
    assert lines[-1].startswith(f"wrote {len(LINES)} sentences")
    _, _, bar = run(capsys, "embed", source, tmp_path / "b.hdf5", "--model", model_dir)
    assert "\r" in bar  # the default progress bar redraws itself


def test_embed_accepts_and_ignores_include_package(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", ["a b"])
    argv = ["embed", source, tmp_path / "out.hdf5", "--model", model_dir, "--quiet"]
    code, out, err = run(capsys, *argv, "--include-package", "my_plugins", "--include-package", "more")
    assert code == 0 and out == ""
    assert err.splitlines() == [
        "warning: --include-package my_plugins is ignored (flair-elmo has no plugins)",
        "warning: --include-package more is ignored (flair-elmo has no plugins)",
    ]


def test_embed_with_huge_batch_numbers(
    tmp_path: Path, model_dir: Path, embedder: ElmoEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", LINES)
    huge = str(10**18)
    code, _, err = run(
        capsys,
        "embed",
        source,
        tmp_path / "out.hdf5",
        "--model",
        model_dir,
        "--quiet",
        "--batch-size",
        huge,
        "--sort-batches",
        huge,
    )
    assert code == 0, err
    with h5py.File(tmp_path / "out.hdf5", "r") as handle:
        # one batch of all lines, sorted by length, as the embedder batches them: bitwise
        for i, array in enumerate(expected_arrays(embedder, LINES, batch_size=len(LINES))):
            np.testing.assert_array_equal(handle[str(i)][()], array)
