import json
import math
import os
import re
from pathlib import Path

import pytest

from flair_elmo_modes.atomic import atomic_path, atomic_write_json, remove_stale_temps

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
