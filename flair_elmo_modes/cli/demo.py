"""``flair-elmo demo``: layer shapes, embedding lengths and how contextual each layer is."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from flair_elmo_modes.cli.common import examples, model_spec
from flair_elmo_modes.errors import ElmoError
from flair_elmo_modes.models import SHIPPED_MODEL, ModelFiles, load_model

if TYPE_CHECKING:
    import numpy as np

SEED_SENTENCE = "I ate an apple for breakfast"
CELL_SENTENCE = "He went to the prison cell with his cell phone to extract blood cell samples from inmates"
CELL_LABELS = ("prison cell", "cell phone", "blood cell")


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "demo",
        parents=[common],
        help="embed two sentences and show layer shapes and how context changes 'cell'",
        description=f"Embed {SEED_SENTENCE!r} and show the shape of every layer and the embedding length of "
        f"the Flair embeddings per mode; then embed {CELL_SENTENCE!r} and show the cosine similarity of its "
        "three 'cell' tokens in every layer. Layer 0 encodes characters only, so there they are identical; "
        "the LSTM layers see the context. Offline with the shipped model.",
        epilog=examples("flair-elmo demo", "flair-elmo demo --model path/to/model_dir", "flair-elmo demo --json"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        metavar="NAME_OR_DIR",
        help=f"shipped or published model name, or a model directory (default {SHIPPED_MODEL})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run, writes_files=False)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    import numpy as np

    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(a64 @ b64 / max(float(np.linalg.norm(a64) * np.linalg.norm(b64)), 1e-12))


def demo_results(files: ModelFiles) -> dict[str, Any]:
    """Everything ``demo`` shows, as plain data."""
    from flair.data import Sentence

    from flair_elmo_modes.embedder import ElmoEmbedder
    from flair_elmo_modes.embeddings import ELMoEmbeddings

    embedder = ElmoEmbedder(bilm=load_model(files))
    seed = SEED_SENTENCE.split()
    seed_layers = embedder.embed_sentence(seed)  # (L + 1, T, D)
    cell_tokens = CELL_SENTENCE.split()
    positions = [i for i, token in enumerate(cell_tokens) if token == "cell"]
    cell_layers = embedder.embed_sentence(cell_tokens)  # (L + 1, T, D)
    pairs = [(a, b) for a in range(len(positions)) for b in range(a + 1, len(positions))]
    similarity = [[_cosine(layer[positions[a]], layer[positions[b]]) for a, b in pairs] for layer in cell_layers]
    lengths = {}
    for mode in ("all", "top", "average"):  # Flair's view: one vector per token
        embeddings = ELMoEmbeddings(model=files.name, bilm=embedder.bilm, embedding_type=mode)
        sentence = Sentence(seed)
        embeddings.embed(sentence)
        vector_lengths = {len(token.get_embedding()) for token in sentence}
        if vector_lengths != {embeddings.embedding_length}:
            raise ElmoError(f"embedding_length {embeddings.embedding_length} but vectors of {vector_lengths} ({mode})")
        lengths[mode] = embeddings.embedding_length
    return {
        "model": files.name,
        "options_file": str(files.options_file),
        "seed_sentence": SEED_SENTENCE,
        "layer_shapes": [list(layer.shape) for layer in seed_layers],
        "embedding_length": lengths,
        "cell_sentence": CELL_SENTENCE,
        "cell_positions": positions,
        "cell_pairs": [f"{CELL_LABELS[a]} ~ {CELL_LABELS[b]}" for a, b in pairs],
        "cell_similarity": similarity,
    }


def format_demo(results: dict[str, Any]) -> str:
    """The text form of :func:`demo_results`."""
    layers = len(results["layer_shapes"])
    names = ["characters"] + [f"LSTM {i}" for i in range(1, layers)]
    lines = [f"model: {results['model']} ({results['options_file']})", "", f"{results['seed_sentence']!r}"]
    lines += [f"  layer {i} ({names[i]}): {tuple(shape)}" for i, shape in enumerate(results["layer_shapes"])]
    lines += ["", "Flair embedding length per token:"]
    lines += [f"  {mode:<8} {length}" for mode, length in results["embedding_length"].items()]
    lines += ["", f"{results['cell_sentence']!r}", "cosine similarity of the 'cell' tokens:"]
    label_width = max(len(f"layer {i} ({n})") for i, n in enumerate(names))
    widths = [max(len(pair), 6) for pair in results["cell_pairs"]]
    lines.append(
        "  "
        + " " * label_width
        + "  "
        + "  ".join(p.rjust(w) for p, w in zip(results["cell_pairs"], widths, strict=True))
    )
    for i, row in enumerate(results["cell_similarity"]):
        cells = "  ".join(f"{value:.4f}".rjust(w) for value, w in zip(row, widths, strict=True))
        lines.append(f"  {f'layer {i} ({names[i]})':<{label_width}}  {cells}")
    lines += [
        "",
        "Layer 0 encodes each token's characters alone, so the three are identical there;",
        "the LSTM layers see the sentence, so 'cell' differs with its context.",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``flair-elmo demo``."""
    results = demo_results(model_spec(args, SHIPPED_MODEL).resolve())
    print(json.dumps(results, indent=2) if args.json else format_demo(results))
    return 0
