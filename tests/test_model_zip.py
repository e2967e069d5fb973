"""Model archives (``.zip``, NLPL's format): resolved like directories, unpacked once, atomically, safely."""

from __future__ import annotations

import json
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from flair_elmo_modes import model_zip
from flair_elmo_modes.atomic import WriteError, temp_path
from flair_elmo_modes.bilm.errors import ElmoFileError
from flair_elmo_modes.cli.main import main
from flair_elmo_modes.embedder import ElmoEmbedder
from flair_elmo_modes.models import ALLENNLP, resolve_model, zip_cache_directory

NLPL_MODEL = Path(__file__).parent / "fixtures" / "simple_elmo" / "model"  # options.json, model.hdf5, vocab.txt


@pytest.fixture(autouse=True)
def cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Flair's cache root, where archives are unpacked, in this test's directory."""
    root = tmp_path / "flair_cache"
    monkeypatch.setenv("FLAIR_CACHE_ROOT", str(root))
    if "flair" in sys.modules:
        monkeypatch.setattr(sys.modules["flair"], "cache_root", root)
    yield root


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def nlpl_members(prefix: str = "") -> dict[str, bytes]:
    return {f"{prefix}{name}": (NLPL_MODEL / name).read_bytes() for name in ("options.json", "model.hdf5", "vocab.txt")}


def cached_entries() -> list[str]:
    """What the archive cache holds, lock files aside."""
    cache = zip_cache_directory()
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) if cache.is_dir() else []


def test_a_zip_is_a_model_named_after_it_and_unpacked_once(tmp_path: Path, monkeypatch) -> None:
    archive = write_zip(tmp_path / "nlpl-209.zip", nlpl_members())
    extractions = []
    real_extract = model_zip._extract
    monkeypatch.setattr(model_zip, "_extract", lambda *args: extractions.append(args) or real_extract(*args))
    files = resolve_model(archive)
    assert (files.name, files.format) == ("nlpl-209", ALLENNLP)
    assert files.options_file.name == "options.json" and files.weight_file.name == "model.hdf5"
    assert files.directory.parent == zip_cache_directory()
    assert files.directory.name.startswith("nlpl-209-") and not files.directory.name.endswith(".tmp")
    assert resolve_model(str(archive)) == files  # from the cache: not unpacked again
    assert len(extractions) == 1
    assert cached_entries() == [files.directory.name]
    # the same model as the directory it was made from
    np.testing.assert_array_equal(
        ElmoEmbedder(str(archive)).embed_sentence(["a", "b"]), ElmoEmbedder(str(NLPL_MODEL)).embed_sentence(["a", "b"])
    )


def test_another_content_under_the_same_name_is_unpacked_again(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "m.zip", nlpl_members())
    first = resolve_model(archive).directory
    write_zip(archive, {**nlpl_members(), "README": b"changed"})
    second = resolve_model(archive).directory
    assert first != second and (second / "README").read_bytes() == b"changed"


def test_members_in_one_folder_and_macos_metadata(tmp_path: Path) -> None:
    members = {**nlpl_members("elmo-ru/"), "__MACOSX/elmo-ru/._model.hdf5": b"\0\5\26\7"}
    files = resolve_model(write_zip(tmp_path / "ru.zip", members))
    assert files.directory.name == "elmo-ru" and files.weight_file.name == "model.hdf5"
    assert not any(path.name == "__MACOSX" for path in files.directory.parent.iterdir())


def test_an_elmoformanylangs_zip_is_that_format(tmp_path: Path) -> None:
    efml = Path(__file__).parent / "fixtures" / "efml" / "char_word"
    members = {f"zhs.model/{path.name}": path.read_bytes() for path in efml.iterdir() if "golden" not in path.name}
    files = resolve_model(write_zip(tmp_path / "zhs.zip", members))
    assert (files.name, files.format, files.directory.name) == ("zhs", "manylangs", "zhs.model")


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "not a zip"])
def test_a_damaged_zip_is_an_error_naming_it_and_leaves_nothing(tmp_path: Path, damage: str) -> None:
    archive = write_zip(tmp_path / "model.zip", {"options.json": b"{}" * 10, "model.hdf5": bytes(range(256)) * 400})
    data = bytearray(archive.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped byte":
        with zipfile.ZipFile(archive) as opened:
            info = opened.getinfo("model.hdf5")
        data[info.header_offset + 30 + len(info.filename) + 100] ^= 0xFF  # inside its compressed bytes
    else:
        data = bytearray(b"PK but not a zip archive")
    archive.write_bytes(bytes(data))
    with pytest.raises(ElmoFileError, match=rf"{archive}: damaged or unreadable zip archive") as error:
        resolve_model(archive)
    if damage == "flipped byte":
        assert "model.hdf5" in str(error.value)  # the damaged member is named
    assert cached_entries() == []


@pytest.mark.parametrize(
    ("name", "problem"),
    [("../evil.txt", "outside"), ("/etc/evil", "outside"), ("a/../../evil", "outside"), ("C:/evil", "outside")],
)
def test_members_outside_the_target_are_refused(tmp_path: Path, name: str, problem: str) -> None:
    archive = write_zip(tmp_path / "model.zip", {**nlpl_members(), name: b"x"})
    with pytest.raises(ElmoFileError, match=rf"{archive}: member .* {problem}"):
        resolve_model(archive)
    assert cached_entries() == [] and not (tmp_path / "evil.txt").exists()


def test_links_encrypted_and_duplicate_members_are_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("model.hdf5")
    link.external_attr = (0o120777) << 16  # a symbolic link
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as archive:
        archive.writestr("options.json", b"{}")
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(ElmoFileError, match=r"'model\.hdf5' is a link"):
        resolve_model(tmp_path / "link.zip")
    locked = write_zip(tmp_path / "locked.zip", {"model.hdf5": b"x"})
    data = bytearray(locked.read_bytes())
    central = data.index(b"PK\x01\x02")  # the member's central directory entry: flags at +8
    data[central + 8] |= 0x1  # "encrypted" (zipfile's writer clears the bit)
    locked.write_bytes(bytes(data))
    with pytest.raises(ElmoFileError, match="is encrypted"):
        resolve_model(tmp_path / "locked.zip")
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(tmp_path / "twice.zip", "w") as archive:
        archive.writestr("options.json", b"{}")
        archive.writestr("./options.json", b"{}")
        archive.writestr("options.json", b"{}")
    with pytest.raises(ElmoFileError, match="occurs twice"):
        resolve_model(tmp_path / "twice.zip")
    assert cached_entries() == []


def test_a_zip_without_a_model_names_the_archive_and_caches_nothing(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "notes.zip", {"README": b"no model here"})
    with pytest.raises(FileNotFoundError, match=rf"{archive} \(a zip archive\) is not an ELMo model directory"):
        resolve_model(archive)
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'm.zip'} \(a zip archive\): not an ELMoForManyLangs"):
        resolve_model(write_zip(tmp_path / "m.zip", nlpl_members()), format="manylangs")
    assert cached_entries() == []


def test_a_disk_too_small_is_a_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = write_zip(tmp_path / "model.zip", nlpl_members())
    monkeypatch.setattr(model_zip.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 100})())
    with pytest.raises(WriteError, match=r"needs \d+ bytes, 100 are free"):
        resolve_model(archive)
    assert cached_entries() == []


def test_staging_left_by_a_crash_is_removed_and_racing_callers_share_one_unpack(tmp_path: Path, monkeypatch) -> None:
    archive = write_zip(tmp_path / "model.zip", nlpl_members())
    target = zip_cache_directory() / f"model-{model_zip.file_sha256(archive)[:16]}"
    stale = temp_path(target)
    stale.mkdir(parents=True)
    (stale / "options.json").write_text("half")
    extractions = []
    real_extract = model_zip._extract
    monkeypatch.setattr(model_zip, "_extract", lambda *args: extractions.append(args) or real_extract(*args))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(resolve_model(archive).directory)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [target] * 3 and len(extractions) == 1
    assert not stale.exists() and cached_entries() == [target.name]


def test_the_cli_and_flair_take_a_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = write_zip(tmp_path / "nlpl.zip", nlpl_members())
    assert main(["info", str(archive), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["model"], info["layer_dim"]) == ("nlpl", 16)
    source, output = tmp_path / "in.txt", tmp_path / "out.hdf5"
    source.write_text("a b c\nHello\n", encoding="utf-8")
    assert main(["embed", str(source), str(output), "--model", str(archive), "--quiet"]) == 0
    with h5py.File(output, "r") as handle:
        assert handle["0"].shape == (3, 3, 16)

    from flair.data import Sentence

    from flair_elmo_modes import ELMoEmbeddings

    embeddings = ELMoEmbeddings(archive, embedding_type="top")
    sentence = Sentence("a b c")
    embeddings.embed(sentence)
    assert embeddings.model_name == "nlpl" and sentence[0].get_embedding(embeddings.name).shape == (16,)
