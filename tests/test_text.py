"""Input text, read one way by train, embed and embed-corpus: shards and lines."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from flair_elmo_modes.text import Line, TextError, file_lines, read_lines, resolve_shards, text_lines


def write(path: Path, text: str = "x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_patterns_name_files_directories_and_globs(tmp_path: Path) -> None:
    a, b, c = (write(tmp_path / "data" / f"train-{k}.txt") for k in range(3))
    write(tmp_path / "data" / "deeper" / "more-0.txt")
    write(tmp_path / "data" / ".hidden")
    assert resolve_shards([str(tmp_path / "data" / "train-*.txt")]) == [a, b, c]
    assert resolve_shards([tmp_path / "data"]) == [a, b, c]  # files directly inside, not hidden ones
    assert resolve_shards([str(tmp_path / "data" / "**" / "more-*.txt")]) == [
        tmp_path / "data" / "deeper" / "more-0.txt"
    ]
    assert resolve_shards([c, str(tmp_path / "data" / "train-*.txt")]) == [c, a, b]  # each once, first mention
    with pytest.raises(TextError, match=r"train-9\*\.txt: the pattern matches no file"):
        resolve_shards([str(tmp_path / "data" / "train-9*.txt")])
    with pytest.raises(FileNotFoundError, match="training text not found"):
        resolve_shards([tmp_path / "missing.txt"])
    with pytest.raises(FileNotFoundError, match="input not found"):
        resolve_shards([tmp_path / "missing.txt"], what="input")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TextError, match="a directory without files"):
        resolve_shards([tmp_path / "empty"])
    with pytest.raises(TextError, match="no input given"):
        resolve_shards([], what="input")


def test_lines_split_as_text_mode_with_the_byte_order_mark_dropped(tmp_path: Path) -> None:
    raw = "\ufeffa b\r\n c \rd\n\n  e\r".encode()
    expected = [Line(1, "a b"), Line(2, "c"), Line(3, "d"), Line(4, ""), Line(5, "e")]
    assert list(read_lines(io.BytesIO(raw), "in.txt")) == expected
    path = tmp_path / "in.txt"
    path.write_bytes(raw)
    assert list(file_lines(path)) == expected
    with path.open(encoding="utf-8") as handle:  # a file opened in text mode: the same records
        assert list(text_lines(handle)) == expected
    for empty in (b"", "\ufeff".encode()):  # no line at all, a byte order mark alone included
        assert list(read_lines(io.BytesIO(empty), "in.txt")) == []


def test_lines_end_only_at_newlines_as_python_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes("x\r\r\ny\x85z\u2028w\n  \nlast".encode())
    with path.open(encoding="utf-8") as handle:
        expected = [line.strip() for line in handle]
    assert [line.text for line in file_lines(path)] == expected


def test_bad_utf8_is_named_by_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("ok\r\nnaïve café\r\n".encode("latin-1"))
    lines = file_lines(path)
    assert next(lines) == Line(1, "ok")
    with pytest.raises(TextError, match=r"latin1\.txt: line 2, column 3: invalid UTF-8 \(bytes ef\)"):
        next(lines)
    with pytest.raises(TextError, match=r"in\.txt: line 3, column 2: invalid UTF-8"):
        list(read_lines(io.BytesIO(b"a\rb\rc\xff\n"), "in.txt"))  # lines end at a lone \r too


def test_a_file_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    with pytest.raises(TextError, match=rf"input file {tmp_path}: Is a directory"):
        list(file_lines(tmp_path))
