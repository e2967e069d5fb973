"""Corpus jobs on a local Ray cluster of 2 CPUs and 2 workers: outputs bitwise those of
``flair-elmo embed``, a worker killed mid-shard, an interrupted job resumed, a bad shard alone
failing, and the command line joining a running cluster with ``--address``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from flair_elmo_modes.cli import main
from flair_elmo_modes.corpus import MANIFEST_NAME, EmbedSettings, ShardsFailed, embed_corpus
from flair_elmo_modes.corpus.worker import ShardWorker
from flair_elmo_modes.models import SHIPPED_MODEL, load_model, resolve_model
from tests.corpus.conftest import write_corpus
from tests.corpus.helpers import assert_same_file, embed_reference, temp_files
from tests.helpers import default_signals, float32_tolerance

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
TINY = EmbedSettings(model=SHIPPED_MODEL)


def manifest(output_dir: Path) -> dict[str, Any]:
    return json.loads((output_dir / MANIFEST_NAME).read_text(encoding="utf-8"))["shards"]


def complete(output_dir: Path) -> set[str]:
    path = output_dir / MANIFEST_NAME
    if not path.is_file():
        return set()
    return {name for name, entry in manifest(output_dir).items() if entry["status"] == "complete"}


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--top", "--batch-size", "5", "--sort-batches", "3", "--forget-sentences"],
        ["--layers", "0,-1", "--use-sentence-keys", "--batch-size", "7"],
    ],
    ids=["all", "top-small-batches", "layers-sentence-keys"],
)
def test_outputs_equal_flair_elmo_embed(ray_cluster: Any, tmp_path: Path, flags: list[str]) -> None:
    shards = write_corpus(tmp_path / "corpus", (40, 25, 60))
    out = tmp_path / "out"
    args = ["embed-corpus", str(tmp_path / "corpus"), str(out), "--model", SHIPPED_MODEL, "--workers", "2"]
    assert main([*args, "--quiet", *flags]) == 0
    entries = manifest(out)
    assert sorted(entries) == ["part-0.hdf5", "part-1.hdf5", "part-2.hdf5"]
    for shard in shards:
        entry = entries[f"{shard.stem}.hdf5"]
        assert entry["status"] == "complete" and entry["attempts"] == 1
        assert entry["input"] == str(shard.resolve())
        assert entry["sha256"] == hashlib.sha256(shard.read_bytes()).hexdigest()
        assert entry["lines"] == len(shard.read_text(encoding="utf-8").splitlines())
        reference = embed_reference(shard, tmp_path / f"reference-{shard.stem}.hdf5", *flags)
        assert_same_file(out / entry["output"], reference)
    assert temp_files(out) == []


def test_other_thread_counts_agree_to_float32_rounding(ray_cluster: Any, tmp_path: Path) -> None:
    # One worker with both CPUs runs 2 torch threads: bitwise embed's output at 2 threads, and
    # within float32 rounding (measured against float64 on the same sentences) of embed's at 1 thread.
    (shard,) = write_corpus(tmp_path / "corpus", (30,))
    summary = embed_corpus([shard], tmp_path / "out", TINY, workers=1, cpus_per_worker=2, progress=False)
    assert summary.embedded == ["part-0.hdf5"]
    output = tmp_path / "out" / "part-0.hdf5"
    assert_same_file(output, embed_reference(shard, tmp_path / "two.hdf5", threads=2))
    one_thread = embed_reference(shard, tmp_path / "one.hdf5", threads=1)
    sentences = [line.split() for line in shard.read_text(encoding="utf-8").splitlines()]
    tolerance = float32_tolerance(load_model(resolve_model(SHIPPED_MODEL)), sentences)
    with h5py.File(output, "r") as got, h5py.File(one_thread, "r") as want:
        for i in range(len(sentences)):
            np.testing.assert_allclose(got[str(i)][()], want[str(i)][()], rtol=0, atol=tolerance)


class CrashOnce(ShardWorker):
    """Kills its own process after the first batch of ``part-1`` has gone into the file, once
    (the marker file remembers across the restart)."""

    marker: Path

    def batch_done(self, shard: str, done: int) -> None:
        if shard == "part-1.hdf5" and not self.marker.exists():
            self.marker.touch()
            os._exit(1)
        super().batch_done(shard, done)


def test_a_worker_killed_mid_shard_is_retried_and_outputs_stay_exact(ray_cluster: Any, tmp_path: Path) -> None:
    shards = write_corpus(tmp_path / "corpus", (30, 40, 30))
    marker = tmp_path / "crashed"
    worker = type("CrashOnceHere", (CrashOnce,), {"marker": marker})
    settings = EmbedSettings(model=SHIPPED_MODEL, batch_size=8)
    summary = embed_corpus(
        [tmp_path / "corpus"], tmp_path / "out", settings, workers=2, progress=False, worker_class=worker
    )
    assert marker.exists()  # the worker did die
    assert sorted(summary.embedded) == ["part-0.hdf5", "part-1.hdf5", "part-2.hdf5"] and not summary.failed
    entries = manifest(tmp_path / "out")
    assert {name: entry["attempts"] for name, entry in entries.items()} == {
        "part-0.hdf5": 1,
        "part-1.hdf5": 2,
        "part-2.hdf5": 1,
    }
    for shard in shards:
        reference = embed_reference(shard, tmp_path / f"reference-{shard.stem}.hdf5", "--batch-size", "8")
        assert_same_file(tmp_path / "out" / f"{shard.stem}.hdf5", reference)
    assert summary.sentences == 100
    assert temp_files(tmp_path / "out") == []  # the dead worker's partial file was removed on retry


class Stop(Exception):
    pass


class HoldPart0(ShardWorker):
    """Keeps ``part-0`` open (a long shard) until the job is cancelled."""

    def batch_done(self, shard: str, done: int) -> None:
        deadline = time.monotonic() + 60
        while shard == "part-0.hdf5" and time.monotonic() < deadline:
            super().batch_done(shard, done)  # raises ShardCancelled once the driver cancels
            time.sleep(0.1)
        super().batch_done(shard, done)


def test_an_interrupted_job_keeps_complete_shards_and_a_rerun_embeds_only_the_rest(
    ray_cluster: Any, tmp_path: Path
) -> None:
    shards = write_corpus(tmp_path / "corpus", (200, 20, 20, 20))
    out = tmp_path / "out"

    def stop_after_a_shard() -> None:
        # every small shard, while part-0 is held open: each is in the manifest as soon as it is done
        if complete(out) == {"part-1.hdf5", "part-2.hdf5", "part-3.hdf5"}:
            raise Stop

    with pytest.raises(Stop):
        embed_corpus(
            [tmp_path / "corpus"],
            out,
            TINY,
            workers=2,
            progress=False,
            check=stop_after_a_shard,
            worker_class=HoldPart0,
        )
    done = complete(out)
    assert done == {"part-1.hdf5", "part-2.hdf5", "part-3.hdf5"}
    entries = manifest(out)
    assert entries["part-0.hdf5"]["status"] == "pending"
    assert not (out / "part-0.hdf5").exists() and temp_files(out) == []  # the cancelled worker cleaned up
    kept = {name: (out / name).stat() for name in done}

    summary = embed_corpus([tmp_path / "corpus"], out, TINY, workers=2, progress=False)
    assert sorted(summary.skipped) == sorted(done)
    assert sorted(summary.embedded) == sorted({f"part-{i}.hdf5" for i in range(4)} - done)
    for name, stat in kept.items():  # not rewritten
        now = (out / name).stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
        assert manifest(out)[name]["finished_at"] == entries[name]["finished_at"]
    for shard in shards:
        assert_same_file(out / f"{shard.stem}.hdf5", embed_reference(shard, tmp_path / f"ref-{shard.stem}.hdf5"))


def test_a_bad_shard_fails_by_name_and_the_good_ones_are_kept_and_resumable(ray_cluster: Any, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (good,) = write_corpus(corpus, (30,))
    (corpus / "empty-line.txt").write_text("a b\nc d\n\ne f\n", encoding="utf-8")
    (corpus / "latin1.txt").write_bytes("fine line\nna\xefve\n".encode("latin-1"))
    out = tmp_path / "out"
    with pytest.raises(ShardsFailed) as failure:
        embed_corpus([corpus], out, TINY, workers=2, progress=False)
    message = str(failure.value)
    assert failure.value.bad_input  # bad input only: the CLI's exit code 2
    assert f"{corpus.resolve() / 'empty-line.txt'}: an empty line at line 3" in message
    assert f"{corpus.resolve() / 'latin1.txt'}: line 2, column 3: invalid UTF-8" in message
    assert failure.value.summary.embedded == ["part-0.hdf5"]
    entries = manifest(out)
    assert entries["part-0.hdf5"]["status"] == "complete"
    assert entries["empty-line.hdf5"]["status"] == entries["latin1.hdf5"]["status"] == "failed"
    assert "line 3" in entries["empty-line.hdf5"]["error"]
    assert sorted(path.name for path in out.iterdir()) == [MANIFEST_NAME, "part-0.hdf5"]
    assert_same_file(out / "part-0.hdf5", embed_reference(good, tmp_path / "ref.hdf5"))

    (corpus / "empty-line.txt").write_text("a b\nc d\ne f\n", encoding="utf-8")
    (corpus / "latin1.txt").unlink()
    summary = embed_corpus([corpus], out, TINY, workers=2, progress=False)
    assert (summary.embedded, summary.skipped) == (["empty-line.hdf5"], ["part-0.hdf5"])
    fixed = embed_reference(corpus / "empty-line.txt", tmp_path / "ref-fixed.hdf5")
    assert_same_file(out / "empty-line.hdf5", fixed)


@pytest.mark.slow
def test_the_command_joins_a_running_cluster_and_sigint_stops_it_resumably(ray_cluster: Any, tmp_path: Path) -> None:
    """--address: the command as a second driver on the test's cluster; SIGINT once it reports progress,
    while the large shard (about 20 s of work) is still being embedded. Which small shards are done by
    then depends on how soon the second worker starts (in a fresh venv it compiles every module first):
    whatever is complete must be exact, the rest pending without a file."""
    shards = write_corpus(tmp_path / "corpus", (8000, 20, 20))
    out = tmp_path / "out"
    address = ray_cluster.get_runtime_context().gcs_address
    command = [sys.executable, "-m", "flair_elmo_modes", "embed-corpus", str(tmp_path / "corpus"), str(out)]
    command += ["--model", SHIPPED_MODEL, "--workers", "2", "--address", address, "--file-friendly-logging"]
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr_file:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr_file, text=True, preexec_fn=default_signals
        )
        deadline = time.monotonic() + 120
        while "embedding: " not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    stderr = log.read_text()
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted"
    assert "Dataset" not in stderr and "Running" not in stderr  # none of Ray Data's progress output
    entries = manifest(out)
    assert entries["part-0.hdf5"]["status"] == "pending" and temp_files(out) == []
    for shard in shards:
        name = f"{shard.stem}.hdf5"
        if entries[name]["status"] == "complete":
            assert_same_file(out / name, embed_reference(shard, tmp_path / f"ref-{name}"))
        else:
            assert entries[name]["status"] == "pending" and not (out / name).exists()


def test_the_manifest_records_each_outputs_sha256_and_a_rerun_redoes_a_damaged_output(
    ray_cluster: Any, tmp_path: Path
) -> None:
    shards = write_corpus(tmp_path / "corpus", (12, 10))
    out = tmp_path / "out"
    embed_corpus([tmp_path / "corpus"], out, TINY, workers=2, progress=False)
    for name, entry in manifest(out).items():
        assert entry["output_sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    # change one value of part-0's first vector in place: same datasets, so only the checksum can tell
    with h5py.File(out / "part-0.hdf5", "a") as handle:
        handle["0"][0, 0, 0] += 1.0
    kept = (out / "part-1.hdf5").stat().st_mtime_ns
    summary = embed_corpus([tmp_path / "corpus"], out, TINY, workers=2, progress=False)
    assert summary.embedded == ["part-0.hdf5"] and summary.skipped == ["part-1.hdf5"]
    assert (out / "part-1.hdf5").stat().st_mtime_ns == kept
    assert_same_file(out / "part-0.hdf5", embed_reference(shards[0], tmp_path / "ref-0.hdf5"))
