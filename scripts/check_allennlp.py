"""Load the shipped model in AllenNLP 2.10.1's ``_ElmoBiLm`` and compare with our ``ElmoEmbedder``.

Run it with the oracle venv's Python (README.md), as a module from the repository root, so that
it imports this checkout's ``flair_elmo_modes``:

    ORACLE/bin/python -m scripts.check_allennlp --text DIR/text/test.txt   # DIR: build_shipped_model's --cache-dir

AllenNLP's biLM is stateful (each batch row starts from the state the previous batch left), so
ours runs with ``stateful=True`` over the same batches; the first batch starts from zeros in
both. Prints the max abs difference per layer as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from allennlp.modules.elmo import _ElmoBiLm, batch_to_ids
from allennlp.nn.util import remove_sentence_boundaries

from flair_elmo_modes.embedder import ElmoEmbedder
from flair_elmo_modes.models import resolve_model

CELL_SENTENCE = "He went to the prison cell with his cell phone to extract blood cell samples from inmates".split()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="en-tiny", help="model name or directory (default en-tiny)")
    parser.add_argument("--text", type=Path, help="extra sentences, one per line (e.g. the Brown test text)")
    parser.add_argument("--sentences", type=int, default=64, help="how many lines of --text (default 64)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    sentences = [CELL_SENTENCE]
    if args.text is not None:
        lines = args.text.read_text(encoding="utf-8").splitlines()[: args.sentences]
        sentences += [line.split() for line in lines if line.split()]
    files = resolve_model(args.model)
    allennlp_bilm = _ElmoBiLm(str(files.options_file), str(files.weight_file), requires_grad=False).eval()
    ours = ElmoEmbedder(files.options_file, files.weight_file, stateful=True)

    max_diff = np.zeros(ours.num_layers)
    max_abs = 0.0
    for start in range(0, len(sentences), args.batch_size):
        batch = sentences[start : start + args.batch_size]
        with torch.no_grad():
            output = allennlp_bilm(batch_to_ids(batch))
        layers = [remove_sentence_boundaries(act, output["mask"])[0] for act in output["activations"]]
        reference = torch.stack(layers, dim=1).numpy()  # (batch, n_layers + 1, timesteps, 2 * projection_dim)
        for i, array in enumerate(ours.embed_batch(batch)):  # each (n_layers + 1, n_tokens, 2 * projection_dim)
            diff = np.abs(array - reference[i, :, : len(batch[i])]).max(axis=(1, 2))
            max_diff = np.maximum(max_diff, diff)
            max_abs = max(max_abs, float(np.abs(reference[i]).max()))
    result = {
        "model": str(files.options_file.parent),
        "allennlp_oracle": "allennlp.modules.elmo._ElmoBiLm (AllenNLP 2.10.1), stateful, float32",
        "sentences": len(sentences),
        "batch_size": args.batch_size,
        "max_abs_diff_per_layer": [float(d) for d in max_diff],
        "max_abs_diff": float(max_diff.max()),
        "max_abs_activation": max_abs,
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
