"""Damaged and misplaced model files: every failure is an error naming the file, checksums catch
what HDF5 cannot, and a directory or a symlink loop is called what it is."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from flair_elmo_modes import ElmoEmbedder, checksums, models
from flair_elmo_modes.bilm import ElmoFileError, ElmoOptions, load_bilm
from flair_elmo_modes.bilm.hdf5 import read_weights
from flair_elmo_modes.checksums import SUMS_NAME, ChecksumError
from flair_elmo_modes.cli import main
from flair_elmo_modes.models import ModelDownloadError
from flair_elmo_modes.training import TrainConfig, train_bilm
from flair_elmo_modes.training.export import LM_HEAD_NAME, load_language_model
from tests.helpers import TINY_OPTIONS, write_random_model
from tests.training.conftest import write_corpus


def metadata_offsets(weights: Path) -> list[int]:
    """The byte offsets of ``weights`` outside every dataset's raw data: HDF5's superblock, object
    headers, B-trees and heaps, where a flipped byte changes the structure rather than a number."""
    data = np.zeros(weights.stat().st_size, dtype=bool)
    with h5py.File(weights, "r") as handle:

        def mark(_: str, item: object) -> None:
            if isinstance(item, h5py.Dataset):
                offset = item.id.get_offset()
                data[offset : offset + item.id.get_storage_size()] = True

        handle.visititems(mark)
    return np.flatnonzero(~data).tolist()


def flipped(source: Path, target_dir: Path, position: int, sidecar: bool) -> tuple[Path, Path]:
    """A copy of the model in ``target_dir`` with byte ``position`` of its weights XORed with 0xFF."""
    shutil.rmtree(target_dir, ignore_errors=True)
    target_dir.mkdir()
    options, weights = target_dir / "options.json", target_dir / "weights.hdf5"
    shutil.copy(source / "options.json", options)
    shutil.copy(source / "weights.hdf5", weights)
    if sidecar:
        checksums.write_sums(target_dir, ["options.json", "weights.hdf5"])
    with open(weights, "r+b") as handle:
        handle.seek(position)
        byte = handle.read(1)[0]
        handle.seek(position)
        handle.write(bytes([byte ^ 0xFF]))
    return options, weights


def test_every_flipped_byte_is_a_named_error_or_a_load_and_with_a_sidecar_a_refusal(tmp_path: Path) -> None:
    source = tmp_path / "model"
    options_file, weights_file = write_random_model(source)
    options = ElmoOptions.from_json(options_file)
    original = read_weights(weights_file, options)
    structure = metadata_offsets(weights_file)
    raw = sorted(set(range(weights_file.stat().st_size)) - set(structure))
    # The structure is where damage raises h5py's own errors (on main before this test, 93 of the
    # tiny model's 28k structure bytes gave a bare "ValueError: Insufficient precision ...", the first
    # at byte 889, in a datatype message): every structure byte of the first KiB, every 32nd one after
    # it, and 50 bytes of the data.
    positions = [p for p in structure if p < 1024] + [p for p in structure if p >= 1024][::32]
    positions += raw[:: max(1, len(raw) // 50)]
    outcomes: dict[str, int] = {"named error": 0, "identical": 0, "changed": 0}
    for position in positions:
        _, weights = flipped(source, tmp_path / "flipped", position, sidecar=False)
        try:
            arrays = read_weights(weights, options)
        except (ElmoFileError, OSError) as error:
            assert str(weights) in str(error), f"byte {position}: {type(error).__name__} names no file: {error}"
            outcomes["named error"] += 1
            continue
        same = all(np.array_equal(arrays[name], value) for name, value in original.items())
        outcomes["identical" if same else "changed"] += 1
    assert outcomes["named error"] > 0 and outcomes["changed"] > 0, outcomes  # the sample reaches both kinds
    # with a SHA256SUMS beside them the same flips are all refused before the file is parsed
    for position in positions[::4]:
        options_path, weights = flipped(source, tmp_path / "flipped", position, sidecar=True)
        with pytest.raises(ChecksumError, match=rf"{weights}: SHA-256 .* does not match"):
            load_bilm(options_path, weights)


def test_an_unreadable_dataset_is_named_with_its_file(tmp_path: Path) -> None:
    options_file, weights_file = write_random_model(tmp_path)
    with h5py.File(weights_file, "a") as handle:  # a dataset of strings where floats belong
        del handle["CNN/b_cnn_0"]
        handle.create_dataset("CNN/b_cnn_0", data=np.array([b"x"] * 4))
    with pytest.raises(ElmoFileError, match=rf"{weights_file}: 'CNN/b_cnn_0' has dtype"):
        load_bilm(options_file, weights_file)


def test_sidecars_verify_and_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "model"
    options_file, weights_file = write_random_model(directory)
    sums = checksums.write_sums(directory, ["options.json", "weights.hdf5"])
    # sha256sum's text format: "<hex>  <name>"
    assert sums.read_text(encoding="utf-8").splitlines() == [
        f"{hashlib.sha256((directory / n).read_bytes()).hexdigest()}  {n}" for n in ("options.json", "weights.hdf5")
    ]
    assert checksums.verify(weights_file) and checksums.verify(options_file)
    ElmoEmbedder(str(directory))  # verified, loads
    assert main(["info", str(directory)]) == 0
    assert f"verified against {SUMS_NAME}: options.json, weights.hdf5" in capsys.readouterr().out
    with open(weights_file, "ab") as handle:  # a change HDF5 itself never notices
        handle.write(b"\0")
    with pytest.raises(ChecksumError, match=rf"{weights_file}: SHA-256 .* does not match .* recorded in {sums}"):
        ElmoEmbedder(str(directory))
    assert main(["info", str(directory)]) == 0
    assert "MISMATCH: weights.hdf5" in capsys.readouterr().out
    source = tmp_path / "in.txt"
    source.write_text("a b\n", encoding="utf-8")
    assert main(["embed", str(source), str(tmp_path / "out.hdf5"), "--model", str(directory), "--quiet"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: {weights_file}: SHA-256")
    assert not (tmp_path / "out.hdf5").exists()


def test_a_malformed_sidecar_names_its_line(tmp_path: Path) -> None:
    _, weights_file = write_random_model(tmp_path)
    (tmp_path / SUMS_NAME).write_text(f"{'a' * 64}  options.json\nnot a checksum line\n", encoding="utf-8")
    with pytest.raises(ElmoFileError, match=rf"{tmp_path / SUMS_NAME}: line 2 is not"):
        checksums.verify(weights_file)


def test_a_file_not_in_the_sidecar_is_not_verified(tmp_path: Path) -> None:
    options_file, weights_file = write_random_model(tmp_path)
    checksums.write_sums(tmp_path, ["options.json"])
    assert checksums.verify(options_file) and not checksums.verify(weights_file)
    assert checksums.status([options_file, weights_file]) == {
        "verified": ["options.json"],
        "mismatch": [],
        "unchecked": ["weights.hdf5"],
    }


def test_the_shipped_model_is_verified() -> None:
    files = models.resolve_model(models.SHIPPED_MODEL)
    assert checksums.verify(files.options_file) and checksums.verify(files.weight_file)


def test_a_published_download_is_checked_against_the_catalogue(tmp_path: Path, monkeypatch) -> None:
    import flair.file_utils

    options_file, weights_file = write_random_model(tmp_path / "server")
    served = {"options": options_file, "weights": weights_file}

    def cached_path(url: str, cache_dir: Path) -> Path:  # a download from a server holding the model
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        target = Path(cache_dir) / url.rsplit("/", 1)[1]
        shutil.copy(served["weights" if url.endswith(".hdf5") else "options"], target)
        return target

    monkeypatch.setattr(flair.file_utils, "cached_path", cached_path)
    monkeypatch.setattr(flair, "cache_root", tmp_path / "cache", raising=False)
    digests = (checksums.file_sha256(options_file), checksums.file_sha256(weights_file))
    small = models.PUBLISHED_MODELS["small"]
    monkeypatch.setitem(
        models.PUBLISHED_MODELS,
        "small",
        dataclasses.replace(small, options_sha256=digests[0], weights_sha256=digests[1]),
    )
    files = models.resolve_model("small")
    assert checksums.file_sha256(files.weight_file) == digests[1]
    # a download whose bytes differ from the catalogue is deleted and refused
    files.weight_file.unlink()
    monkeypatch.setitem(
        models.PUBLISHED_MODELS,
        "small",
        dataclasses.replace(small, options_sha256=digests[0], weights_sha256="0" * 64),
    )
    with pytest.raises(ModelDownloadError, match=r"has SHA-256 [0-9a-f]{64}, expected 0{64}"):
        models.resolve_model("small")
    assert not files.weight_file.exists()


@pytest.mark.parametrize("which", ["options.json", "weights.hdf5"])
def test_a_directory_where_a_file_belongs_says_so(tmp_path: Path, which: str) -> None:
    options_file, weights_file = write_random_model(tmp_path / "model")
    path = tmp_path / "model" / which
    path.unlink()
    path.mkdir()
    with pytest.raises(IsADirectoryError, match=rf"{path} is a directory; expected a file"):
        load_bilm(options_file, weights_file)


def test_symlink_loops_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options_file, weights_file = write_random_model(tmp_path / "model")
    options_file.unlink()
    os.symlink(options_file, options_file)  # options.json -> options.json
    with pytest.raises(ElmoFileError, match=rf"{options_file}: symlink loop"):
        load_bilm(options_file, weights_file)
    loop = tmp_path / "loop"
    os.symlink(loop, loop)  # a --model directory that points at itself
    with pytest.raises(ElmoFileError, match=rf"model directory {loop}: symlink loop"):
        models.resolve_model(str(loop))
    source = tmp_path / "in.txt"
    source.write_text("a b\n", encoding="utf-8")
    assert main(["embed", str(source), str(tmp_path / "out.hdf5"), "--model", str(loop), "--quiet"]) == 2
    assert "symlink loop" in capsys.readouterr().err
    assert main(["info", str(loop)]) == 2
    assert "symlink loop" in capsys.readouterr().err


def test_a_damaged_language_model_head_is_refused_or_named(tmp_path: Path) -> None:
    text = write_corpus(tmp_path / "train.txt", 40, seed=0)
    config = TrainConfig(
        train_files=(str(text),), output_dir=tmp_path / "run", options=TINY_OPTIONS, cutoffs=(8,), max_steps=1
    )
    model_dir = train_bilm(dataclasses.replace(config, progress=False)).model_dir
    head = model_dir / LM_HEAD_NAME
    data = bytearray(head.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the softmax weights: HDF5 would read another number
    head.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=rf"{head}: SHA-256"):
        load_language_model(model_dir)
    (model_dir / SUMS_NAME).unlink()
    head.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))  # an HDF5 signature and nothing readable after it
    with pytest.raises(ElmoFileError, match=rf"{head}: not a readable language-model head"):
        load_language_model(model_dir)
