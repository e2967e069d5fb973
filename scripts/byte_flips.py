"""Flip single bytes of a model's ``weights.hdf5`` and sort what loading it then does.

    python -m scripts.byte_flips [--model en-tiny] [--flips 200] [--seed 0] [--json out.json]

Each flip XORs one byte with 0xFF in a copy of the model directory, then loads it as
``ElmoEmbedder`` does and embeds one sentence. Outcomes: ``named error`` (an exception whose message
names the file), ``bare error`` (any other exception), ``identical`` (the same vectors), ``silent
change`` (other vectors, no error); and the same flips again with a ``SHA256SUMS`` sidecar beside
the files (``refused by checksum``). A third of the positions fall in the first 4 KiB of the file
and a third in its first 2%, where HDF5 keeps its superblock, object headers and B-trees; a third
anywhere. Runs against whatever
``flair_elmo_modes`` is importable (set PYTHONPATH to compare another checkout).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np

from flair_elmo_modes import ElmoEmbedder
from flair_elmo_modes.models import resolve_model

SENTENCE = ["He", "went", "to", "the", "prison", "cell", "."]
NAMES = ("options.json", "weights.hdf5")


def outcome(directory: Path, weights: Path, expected: np.ndarray) -> str:
    try:
        got = ElmoEmbedder(str(directory)).embed_sentence(SENTENCE)
    except Exception as error:
        if type(error).__name__ == "ChecksumError":
            return "refused by checksum"
        return "named error" if str(weights) in str(error) else f"bare error ({type(error).__name__})"
    return "identical" if np.array_equal(got, expected) else "silent change"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="en-tiny")
    parser.add_argument("--flips", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    files = resolve_model(args.model)
    expected = ElmoEmbedder(args.model).embed_sentence(SENTENCE)
    size = files.weight_file.stat().st_size
    generator = random.Random(args.seed)
    # a third in the first 4 KiB (superblock, root group), a third in the first 2% (object headers,
    # B-trees of the datasets written first), a third anywhere (mostly weights)
    regions = (min(size, 4096), max(1, size // 50), size)
    positions = sorted({generator.randrange(regions[i % 3]) for i in range(args.flips)})
    table: dict[str, collections.Counter[str]] = {}
    with tempfile.TemporaryDirectory() as work:
        for sidecar in (False, True):
            counts: collections.Counter[str] = collections.Counter()
            for position in positions:
                directory = Path(work) / "model"
                shutil.rmtree(directory, ignore_errors=True)
                directory.mkdir()
                shutil.copy(files.options_file, directory / "options.json")
                weights = directory / "weights.hdf5"
                shutil.copy(files.weight_file, weights)
                if sidecar:  # sha256sum's format, written here so that older checkouts can be compared
                    sums = [f"{hashlib.sha256((directory / n).read_bytes()).hexdigest()}  {n}\n" for n in NAMES]
                    (directory / "SHA256SUMS").write_text("".join(sums), encoding="utf-8")
                data = bytearray(weights.read_bytes())
                data[position] ^= 0xFF
                weights.write_bytes(bytes(data))
                counts[outcome(directory, weights, expected)] += 1
            table["with SHA256SUMS" if sidecar else "without sidecar"] = counts
    report = {"model": args.model, "file_bytes": size, "flips": len(positions), "outcomes": table}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
