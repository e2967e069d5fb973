"""``flair-elmo embed`` (cli/embed.py): the HDF5 layout and values, reading the input, bad input, write errors."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from flair_elmo_modes import ElmoEmbedder, models
from flair_elmo_modes.bilm import ElmoFileError
from tests.cli.helpers import (
    LINES,
    REPO,
    assert_one_line_error,
    assert_untouched,
    before_each_batch,
    expected_arrays,
    finish,
    leftovers,
    limit_file_size,
    long_input,
    needs_shipped_model,
    posix_signals,
    run,
    start_cli,
    wait_for_temp,
    write_input,
)
from tests.helpers import assert_as_accurate, full_disk, write_random_model


def float64_arrays(embedder: ElmoEmbedder, lines: list[str]) -> list[np.ndarray]:
    """The lines' layers from a float64 copy of the embedder's biLM (rounded to float32 on output)."""
    return ElmoEmbedder(bilm=copy.deepcopy(embedder.bilm).double()).embed_batch([line.split() for line in lines])


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


# --------------------------------------------------------------------------------------------
# embed: bad input leaves no file and keeps an existing one


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
