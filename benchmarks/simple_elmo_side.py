"""The simple_elmo 0.9.2 side of ``bench_simple_elmo.py``: a worker run by the Python of its TF venv.

Not imported by anything: ``bench_simple_elmo.py`` starts it as a process in the venv of
simple_elmo (TensorFlow 2.21, ``TF_USE_LEGACY_KERAS=1``), and talks to it in JSON lines, one
request on stdin, one reply on stdout:

- ``{"cmd": "load", "options": path, "weights": path, "max_batch_size": 32}`` ->
  ``{"ok": true, "tensorflow": ..., "simple_elmo": ..., "state_variables": ["name [shape]", ...], ...}``:
  the model as ``simple_elmo.ElmoModel().load(directory)`` builds it, from a temporary directory
  holding ``options.json`` and a link ``model.hdf5`` to the weights.
- ``{"cmd": "embed", "sentences": [[token, ...], ...], "batch_size": n, "repeat": k, "save": true}``
  -> ``{"seconds": [k wall seconds], "reset_seconds": [...], "vectors_file": path}``: ``k`` passes
  over the sentences in batches of ``n``; the vectors of the last pass are written (unless
  ``"save": false``) to an ``.npz`` holding one float32 array per sentence, keys ``"0"``, ``"1"``,
  ..., each ``(n_layers + 1, n_tokens, 2 * projection_dim)`` without the sentence boundaries:
  layer 0 the char-CNN token representation repeated ``[x; x]``, then the LSTM layers
  ``[forward; backward]`` (the layout of ``flair_elmo_modes.ElmoEmbedder.embed_batch``).
  ``"reset": false`` leaves the state carried from batch to batch, as simple_elmo does (a check
  that the reset matters; the benchmark always resets).
- ``{"cmd": "quit"}`` -> ``{"ok": true}``, then the worker exits.

A failed request replies ``{"error": "..."}``.

Each batch runs the op ``ElmoModel.get_elmo_vectors(texts, layers="all")`` runs (the biLM's
``lm_embeddings`` through ``weight_layers(..., use_layers="all")``, i.e. times a gamma of 1), in
one ``tf.compat.v1.Session`` with ``intra_op_parallelism_threads`` / ``inter_op_parallelism_threads``
from the command line. What is left out of ``get_elmo_vectors``: its float64 matrix of all
sentences padded to the longest, its warm-up batch, and its carried state.

LSTM state: bilm-tf's graph is stateful. Every LSTM layer and direction keeps its ``(c, h)`` in two
non-trainable variables of ``max_batch_size`` rows (bilm ``model.py``,
``BidirectionalLanguageModelGraph._build_lstms``: ``init_states``); a batch starts from their first
``batch_size`` rows and its final states are assigned back (``update_state_op``, a control
dependency of every output). simple_elmo never resets them, so a sentence's vectors depend on the
batches before it (with its default ``warmup=True`` even the first batch starts from the state the
warm-up batch left). Here an op assigns zeros to all of them before every batch (timed with the
batch, and also reported alone as ``reset_seconds``), so every batch starts from zero state, as
``ElmoEmbedder`` does. After a reset, a batch's vectors equal those of
``get_elmo_vectors(texts, warmup=False, layers="all")`` bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--intra-threads", type=int, default=2, help="TF intra_op_parallelism_threads")
    parser.add_argument("--inter-threads", type=int, default=1, help="TF inter_op_parallelism_threads")
    return parser.parse_args()


# Names tf.Variable gives the unnamed state variables bilm-tf makes in its ``bilm`` scope (the
# weights are named: ``bilm/char_embed``, ``bilm/CNN/W_cnn_0``, ``bilm/RNN_0/...``).
STATE_NAME = re.compile(r"bilm/Variable(_\d+)?:0")


class Worker:
    def __init__(self, intra_threads: int, inter_threads: int) -> None:
        self.intra_threads = intra_threads
        self.inter_threads = inter_threads
        self.directory = Path(tempfile.mkdtemp(prefix="simple_elmo_side_"))
        self.session: Any = None

    def load(self, options: str, weights: str, max_batch_size: int = 32) -> dict[str, Any]:
        import numpy as np
        import simple_elmo
        import tensorflow as tf
        from simple_elmo import ElmoModel
        from simple_elmo.elmo import weight_layers

        if self.session is not None:
            raise RuntimeError("a model is loaded already (one per worker)")
        model_dir = self.directory / "model"
        model_dir.mkdir()
        shutil.copyfile(options, model_dir / "options.json")
        (model_dir / "model.hdf5").symlink_to(Path(weights).resolve())

        model = ElmoModel()  # disables eager execution
        model.load(str(model_dir), max_batch_size=max_batch_size)
        # What get_elmo_vectors(texts, layers="all") runs, built once.
        output = weight_layers("input", model.sentence_embeddings_op, use_layers="all")["weighted_op"]

        graph = tf.compat.v1.get_default_graph()
        states = [v for v in tf.compat.v1.global_variables() if STATE_NAME.fullmatch(v.name)]
        expected = 4 * (model.n_layers - 1)  # (c, h) x 2 directions x LSTM layers (n_layers counts layer 0)
        if len(states) != expected or any(int(v.shape[0]) != max_batch_size for v in states):
            raise RuntimeError(
                f"expected {expected} LSTM state variables of {max_batch_size} rows, found "
                + ", ".join(f"{v.name} {v.shape}" for v in states)
            )
        reset = tf.group(*[v.assign(tf.zeros_like(v)) for v in states])

        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=self.intra_threads,
            inter_op_parallelism_threads=self.inter_threads,
        )
        self.session = tf.compat.v1.Session(graph=graph, config=config)
        self.session.run(tf.compat.v1.global_variables_initializer())
        graph.finalize()  # nothing is added to the graph from here on
        self.model, self.output, self.reset, self.np = model, output, reset, np
        return {
            "ok": True,
            "tensorflow": tf.__version__,
            "simple_elmo": getattr(simple_elmo, "__version__", None) or _version("simple_elmo"),
            "tf_keras": _version("tf_keras"),
            "numpy": np.__version__,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
            "intra_op_threads": self.intra_threads,
            "inter_op_threads": self.inter_threads,
            "max_batch_size": max_batch_size,
            "state_variables": [f"{v.name} {list(v.shape)}" for v in states],
        }

    def embed(
        self, sentences: list[list[str]], batch_size: int, repeat: int = 1, save: bool = True, reset: bool = True
    ) -> dict[str, Any]:
        if self.session is None:
            raise RuntimeError("no model loaded")
        if batch_size > self.model.batch_size:
            raise ValueError(f"batch_size {batch_size} over the loaded max_batch_size {self.model.batch_size}")
        chunks = [sentences[i : i + batch_size] for i in range(0, len(sentences), batch_size)]
        placeholder = self.model.sentence_character_ids
        seconds, reset_seconds = [], []
        arrays: list[Any] = []
        for _ in range(repeat):
            arrays = []
            reset_total = 0.0
            start = time.perf_counter()
            for chunk in chunks:
                char_ids = self.model.batcher.batch_sentences(chunk)
                if reset:
                    before = time.perf_counter()
                    self.session.run(self.reset)
                    reset_total += time.perf_counter() - before
                vectors = self.session.run(self.output, feed_dict={placeholder: char_ids})
                arrays += [vectors[i, :, : len(sentence)] for i, sentence in enumerate(chunk)]
            seconds.append(time.perf_counter() - start)
            reset_seconds.append(reset_total)
        reply: dict[str, Any] = {"seconds": seconds, "reset_seconds": reset_seconds}
        if save:
            path = self.directory / "vectors.npz"
            self.np.savez(path, **{str(i): array for i, array in enumerate(arrays)})
            reply["vectors_file"] = str(path)
        return reply

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main() -> int:
    args = parse_args()
    # Replies go to the original stdout; anything else written to fd 1 (TF, C libraries) goes to stderr.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    worker = Worker(args.intra_threads, args.inter_threads)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            command = request.pop("cmd", None)
            try:
                if command == "load":
                    reply = worker.load(**request)
                elif command == "embed":
                    reply = worker.embed(**request)
                elif command == "quit":
                    replies.write(json.dumps({"ok": True}) + "\n")
                    replies.flush()
                    break
                else:
                    reply = {"error": f"unknown command {command!r}"}
            except Exception as error:  # the parent gets every failure as a reply
                reply = {"error": f"{type(error).__name__}: {error}"}
            replies.write(json.dumps(reply) + "\n")
            replies.flush()
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
