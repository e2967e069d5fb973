from __future__ import annotations

import errno
import json
import math
import os
import re
from pathlib import Path

import pytest

from flair_elmo_modes.atomic import (
    WriteError,
    atomic_file,
    atomic_path,
    atomic_write_json,
    hdf5_errors,
    hdf5_file,
    publish_directory,
    remove_stale_temps,
    temp_path,
)
from tests.helpers import full_disk

TEMP_NAME = re.compile(r"\.out\.json\.[0-9a-f]{8}\.tmp")


def test_success_replaces_the_target_through_a_hidden_temp_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and TEMP_NAME.fullmatch(tmp.name), tmp
        assert not tmp.exists()  # not created: writers may open it exclusively
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing visible before the block ends
    assert target.read_text() == "new"
    assert sorted(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_keeps_the_old_content_and_leaves_no_temp(tmp_path: Path, error: type[BaseException]) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(error), atomic_path(target) as tmp:
        tmp.write_text("half written")
        raise error
    assert target.read_text() == "old"
    assert sorted(tmp_path.iterdir()) == [target]
    # Without an old file, a failure leaves nothing at all.
    with pytest.raises(error), atomic_path(tmp_path / "new.json") as tmp:
        tmp.write_text("half written")
        raise error
    assert sorted(tmp_path.iterdir()) == [target]


def test_a_block_that_writes_nothing_is_an_error(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_path(target):
        pass
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]


def test_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"output directory does not exist: .*missing"):
        with atomic_path(tmp_path / "missing" / "out.json"):
            pass


def test_file_and_directory_are_fsynced_before_and_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.json"
    events: list[tuple[str, str, bool]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else str(fd)
        events.append(("fsync", name, target.exists()))
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        events.append(("replace", str(dst), target.exists()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_json(target, {"a": 1})
    assert [kind for kind, _, _ in events] == ["fsync", "replace", "fsync"]
    assert events[0][2] is False and events[2][2] is True  # the file before the rename, the directory after
    if os.path.exists("/proc/self/fd"):
        assert TEMP_NAME.fullmatch(Path(events[0][1]).name) and events[2][1] == str(tmp_path)
    assert json.loads(target.read_text()) == {"a": 1}


def test_atomic_write_json_writes_indented_json_and_refuses_nan(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_json(target, {"x": [1, 2.5], "y": None})
    assert target.read_text() == '{\n  "x": [\n    1,\n    2.5\n  ],\n  "y": null\n}\n'
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match=r"out\.json: cannot write as JSON"):
            atomic_write_json(target, {"x": bad})
    with pytest.raises(ValueError, match=r"out\.json: cannot write as JSON"):
        atomic_write_json(target, {"x": object()})
    assert json.loads(target.read_text()) == {"x": [1, 2.5], "y": None}
    assert sorted(tmp_path.iterdir()) == [target]


def test_remove_stale_temps_removes_only_this_targets_temps(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("keep")
    with atomic_path(target) as tmp:  # a name atomic_path really uses, left as a killed process would
        tmp.write_text("new")
        stale = [tmp]
    stale[0].write_text("stale")
    stale.append(tmp_path / ".out.json.0123abcd.tmp")
    stale[1].write_text("stale")
    kept = [
        tmp_path / ".out.json.0123abcd.tmp.bak",
        tmp_path / ".out.json.0123abc.tmp",  # 7 digits
        tmp_path / ".out.json.0123ABCD.tmp",  # not lowercase hex
        tmp_path / ".other.json.0123abcd.tmp",  # another target
        tmp_path / ".out.json.x.0123abcd.tmp",  # the temp of "out.json.x"
        tmp_path / "out.json.0123abcd.tmp",  # not hidden
        tmp_path / ".outxjson.0123abcd.tmp",  # the dot is literal
    ]
    for path in kept:
        path.write_text("keep")
    (tmp_path / ".out.json.fedcba98.tmp").mkdir()  # a directory is never removed
    assert remove_stale_temps(target) == sorted(stale)
    assert not any(path.exists() for path in stale)
    assert all(path.read_text() == "keep" for path in kept) and target.read_text() == "new"
    assert remove_stale_temps(target) == [] and remove_stale_temps(tmp_path / "missing" / "x") == []


# --------------------------------------------------------------------------------------------
# failed writes: GuardedFile, atomic_file, hdf5_file, WriteError


def test_atomic_file_turns_a_full_disk_into_one_write_error_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    full_disk(monkeypatch, capacity=10)
    with pytest.raises(WriteError) as info, atomic_file(target) as handle:
        assert handle.write(b"0123456789abcdef") == 16  # the writer is told all went well
        assert handle.error is not None and handle.error.errno == errno.ENOSPC
        handle.write(b"more")  # dropped
    assert str(info.value) == f"cannot write {target}: No space left on device"
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]


def test_a_write_error_wins_over_the_error_it_caused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.bin"
    full_disk(monkeypatch, capacity=0)
    with pytest.raises(WriteError, match="No space left on device") as info, atomic_file(target) as handle:
        handle.write(b"x")
        raise RuntimeError("unexpected pos 576 vs 534")  # what torch.save says after a failed write
    assert isinstance(info.value.__cause__, RuntimeError)
    assert list(tmp_path.iterdir()) == []


def test_guarded_file_check_stops_a_long_writer_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full_disk(monkeypatch, capacity=4)
    with pytest.raises(WriteError), atomic_file(tmp_path / "out.bin") as handle:
        handle.write(b"1234")
        handle.check()  # nothing failed yet
        handle.write(b"5")
        handle.check()
        raise AssertionError("check() should have raised")


def test_torch_save_through_atomic_file_round_trips(tmp_path: Path) -> None:
    import torch

    state = {"weight": torch.arange(6.0).reshape(2, 3), "words": ["a", "b"]}
    with atomic_file(tmp_path / "state.pt") as handle:
        torch.save(state, handle)
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)
    assert torch.equal(loaded["weight"], state["weight"]) and loaded["words"] == ["a", "b"]


def test_hdf5_file_writes_a_normal_hdf5_file(tmp_path: Path) -> None:
    import h5py
    import numpy as np

    with atomic_file(tmp_path / "out.hdf5") as guard, hdf5_file(guard) as handle, hdf5_errors(guard):
        handle.create_dataset("x", data=np.arange(4, dtype=np.float32))
        handle.attrs["kind"] = "test"
    with h5py.File(tmp_path / "out.hdf5", "r") as handle:
        assert handle["x"][()].tolist() == [0.0, 1.0, 2.0, 3.0] and handle.attrs["kind"] == "test"


def test_hdf5_file_on_a_full_disk_is_one_write_error_without_hdf5_noise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    target = tmp_path / "out.hdf5"
    target.write_bytes(b"old")
    full_disk(monkeypatch, capacity=50_000)
    with pytest.raises(WriteError, match="No space left on device"):
        with atomic_file(target) as guard, hdf5_file(guard) as handle:
            for i in range(100):
                with hdf5_errors(guard):
                    handle.create_dataset(str(i), data=np.zeros((100, 100), dtype=np.float32))
                guard.check()
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]
    assert "Exception ignored" not in capfd.readouterr().err  # HDF5 never saw a failed write


def test_an_hdf5_error_at_close_is_a_write_error_naming_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import h5py

    real_close = h5py.File.close

    def failing_close(self: h5py.File) -> None:  # what h5py does when the final flush fails
        real_close(self)
        raise RuntimeError("Can't decrement id ref count (file write failed: errno = 28)")

    target = tmp_path / "out.hdf5"
    target.write_bytes(b"old")
    monkeypatch.setattr(h5py.File, "close", failing_close)
    with pytest.raises(WriteError, match=r"cannot write .*out\.hdf5: Can't decrement id ref count"):
        with atomic_file(target) as guard, hdf5_file(guard) as handle:
            handle.attrs["x"] = 1
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]


def test_before_commit_runs_after_the_fsync_and_can_cancel_the_rename(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    seen: list[bool] = []

    def cancel() -> None:
        seen.append(target.read_text() == "old")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(target, {"a": 1}, before_commit=cancel)
    assert seen == [True] and target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]
    atomic_write_json(target, {"a": 1}, before_commit=lambda: None)
    assert json.loads(target.read_text()) == {"a": 1}


def test_a_failed_rename_is_a_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_rename(src: object, dst: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(src))

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(WriteError, match=r"cannot write .*out\.json: Input/output error"):
        atomic_write_json(tmp_path / "out.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_temps_removes_staging_directories_only_when_asked(tmp_path: Path) -> None:
    staging = temp_path(tmp_path / "model")
    staging.mkdir()
    (staging / "weights.hdf5").write_text("half")
    assert staging.name.startswith(".model.") and staging.name.endswith(".tmp")
    assert remove_stale_temps(tmp_path / "model") == [] and staging.is_dir()
    assert remove_stale_temps(tmp_path / "model", directories=True) == [staging]
    assert list(tmp_path.iterdir()) == []


def test_publish_directory_fsyncs_every_file_then_renames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model"
    staging = temp_path(target)
    (staging / "inner").mkdir(parents=True)
    (staging / "options.json").write_text("{}")
    (staging / "inner" / "weights.hdf5").write_text("w")
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else str(fd)))
        real_fsync(fd)

    def rename(src: str | Path, dst: str | Path) -> None:
        events.append(("rename", str(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    publish_directory(staging, target)
    assert [kind for kind, _ in events] == ["fsync"] * 4 + ["rename", "fsync"]  # 2 files, 2 folders; the parent
    if os.path.exists("/proc/self/fd"):
        synced = {Path(name).name for _, name in events[:4]}
        assert synced == {"options.json", "weights.hdf5", "inner", staging.name} and events[5][1] == str(tmp_path)
    assert (target / "inner" / "weights.hdf5").read_text() == "w" and not staging.exists()


def test_publish_directory_onto_an_existing_directory_is_a_write_error(tmp_path: Path) -> None:
    target = tmp_path / "model"
    (target / "old").mkdir(parents=True)
    staging = temp_path(target)
    staging.mkdir()
    (staging / "new").write_text("x")
    with pytest.raises(WriteError, match=r"cannot write .*model"):
        publish_directory(staging, target)
    assert (target / "old").is_dir() and staging.is_dir()  # both untouched: the caller removes its staging
