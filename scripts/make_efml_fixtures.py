"""Write ELMoForManyLangs (EFML) model directories with random weights, and their golden outputs.

The oracle is HIT-SCIR's own code (``elmoformanylangs`` 0.0.4.post2): this script never imports
``flair_elmo_modes``. It needs the oracle venv (``bash ../shared/tools/allennlp-oracle-venv.sh DIR``
installs ``elmoformanylangs`` next to AllenNLP). From the repository root::

    ORACLE/bin/python scripts/make_efml_fixtures.py            # (re)write tests/fixtures/efml/
    ORACLE/bin/python scripts/make_efml_fixtures.py --benchmark  # also time a released-size model

Each case in ``CASES`` becomes ``tests/fixtures/efml/<case>/``, laid out as EFML's training code
(``python -m elmoformanylangs.biLM train``) leaves a model directory:

- ``config.json``: the training arguments (``vars(opt)``); inference reads only ``config_path``.
- ``<name>.json``: the model config (``encoder``, ``token_embedder``, ``classifier``, ``dropout``),
  found through ``config_path`` (relative to the model directory, or, as in the released models, an
  absolute path that does not exist whose file name is looked up in the model directory).
- ``char.dic`` / ``word.dic``: ``token<TAB>id`` lines, UTF-8, built from ``train.raw`` the way
  ``biLM.train`` builds them (``word.dic`` is written even when ``word_dim`` is 0, as training does).
- ``token_embedder.pkl`` / ``encoder.pkl``: ``torch.save(module.state_dict())`` by EFML's own
  ``biLM.Model.save_model``, after every parameter was redrawn from a normal distribution; case
  ``char_word`` re-saves them in the pre-1.6 (non-zip) ``torch.save`` format the released
  (torch 0.4) files have.
- ``golden_sentences.json``: the test sentences (lists of tokens).
- ``golden.npz`` (compressed), for sentence ``i`` (``{i:02d}``):
    - ``layers_{i}``: float32 ``Embedder(dir).sents2elmo(sentences, output_layer=-2)[i]``, all
      sentences in one batch of a fresh ``Embedder`` (zero LSTM state). ``elmo`` encoder:
      ``(n_layers + 1, n_tokens, 2 * projection_dim)``; ``lstm`` encoder: ``(n_tokens, 2 * projection_dim)``.
    - ``alone_{i}``: the same from a fresh ``Embedder`` given only sentence ``i``.
    - ``char_ids_{i}`` ``(n_tokens + 2, max_characters_per_token)`` / ``word_ids_{i}`` ``(n_tokens + 2,)``:
      the int64 ids EFML's ``create_one_batch`` feeds the model (with ``<bos>``/``<eos>`` rows);
      ``(n_tokens + 2, 0)`` / ``(0,)`` where the model has no char / word table.
    - ``average_{i}`` / ``layer0_{i}`` (case ``char_word`` only): ``output_layer=-1`` and ``0``.
    - ``f64_layers_{i}`` (case ``char_word`` only): float64, the same weights after ``model.double()``.
    - ``n_sentences``.

``tests/fixtures/efml/train.raw`` is the training text the lexicons come from.
``tests/fixtures/efml/manifest.json`` records the oracle versions, each case's model config and
seed, and measured differences: batch vs alone, a second ``sents2elmo`` call on the same
``Embedder`` (EFML's encoder is stateful), several batches (``batch_size`` 2), float32 vs float64,
and how often the clips bite. With ``--benchmark`` it also records the speed of ``sents2elmo`` on a
model of released size (``cnn_50_100_512_4096_sample.json``) with random weights.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import datetime
import json
import logging
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import elmoformanylangs
import elmoformanylangs.modules.lstm_cell_with_projection as efml_cell_module
import numpy as np
import torch
from elmoformanylangs import Embedder
from elmoformanylangs.biLM import Model as TrainingModel
from elmoformanylangs.biLM import get_truncated_vocab, read_corpus
from elmoformanylangs.elmo import read_list
from elmoformanylangs.frontend import create_one_batch
from elmoformanylangs.modules.embedding_layer import EmbeddingLayer

REPO = Path(__file__).resolve().parent.parent
FIXTURE_DIR = REPO / "tests" / "fixtures" / "efml"
ORACLE_VENV_INFO = Path(sys.prefix) / "oracle-venv.json"
MAX_TOTAL_BYTES = 3_000_000

#: Training text (one sentence a line, tokens split on whitespace, as ``biLM.read_corpus`` reads it).
#: Words and characters of ``SENTENCES`` left out of it on purpose: "Zürich" (``Z``), "красивый",
#: "город", "Ёлка" (``Ё``), "很", "冷", "صديقي", "🙂", "café" in NFD (combining U+0301), the space.
TRAIN_TEXT = """\
Ça va très bien , merci beaucoup .
Der Straßenbahnfahrer fährt über die Brücke nach Hause .
Žluťoučký kůň úpěl ďábelské ódy .
Die Donaudampfschifffahrtsgesellschaft fährt heute nicht .
Москва — столица России .
Я люблю читать книги , а ты ?
今天 天氣 真 好 。
我 喜欢 学习 中文 。
東京 は 日本 の 首都 です 。
مرحبا بالعالم .
اللغة العربية جميلة جدا .
Ça va , et toi ?
"""

#: Test sentences: four scripts, words longer than ``max_characters_per_token - 2`` (10 - 2 = 8),
#: unknown characters and words, a 1-token sentence, different lengths (two of equal length).
SENTENCES: list[list[str]] = [
    ["Ça", "va", "très", "bien", "."],
    ["Der", "Straßenbahnfahrer", "fährt", "nach", "Zürich", "."],
    ["Москва", "—", "красивый", "город", ",", "Ёлка", "!"],
    ["今天", "天氣", "很", "冷", "。"],
    ["مرحبا", "يا", "صديقي"],
    ["好"],
    ["Die", "Donaudampfschifffahrtsgesellschaft", "fährt", "🙂", "nach", "Hà Nội", "und", "trinkt", "cafe\u0301", "."],
    ["東京", "は", "全\u3000角", "です"],
]

SMALL_ENCODER = {"name": "elmo", "projection_dim": 16, "cell_clip": 3, "proj_clip": 3, "dim": 32, "n_layers": 2}
SMALL_TOKEN_EMBEDDER = {
    "name": "cnn",
    "activation": "relu",
    "filters": [[1, 4], [2, 8], [3, 16]],
    "n_highway": 2,
    "word_dim": 0,
    "char_dim": 8,
    "max_characters_per_token": 10,
}


def model_config(encoder: dict[str, Any], token_embedder: dict[str, Any]) -> dict[str, Any]:
    """A model config in the layout of EFML's ``configs/cnn_50_100_512_4096_sample.json``."""
    return {
        "encoder": {**SMALL_ENCODER, **encoder},
        "token_embedder": {**SMALL_TOKEN_EMBEDDER, **token_embedder},
        "classifier": {"name": "sampled_softmax", "n_samples": 8},
        "dropout": 0.1,
    }


#: name -> seed, model config, ``config_path`` written into config.json, and extras:
#: ``extra_chars`` / ``extra_words`` are appended to the lexicons after the training ones (before
#: the special characters), to exercise the reader: EFML's ``.dic`` reader turns a line whose
#: token is whitespace into U+3000 (see efml_facts.md), and a word may hold a space.
CASES: dict[str, dict[str, Any]] = {
    # The released model's shape without the word table (word_dim 0): char CNN + elmo encoder.
    "char_only": {
        "seed": 2001,
        "config": model_config({}, {"word_dim": 0}),
        "config_path": "cnn_8_0_16_32.json",
    },
    # The released models' shape (char_dim and word_dim > 0), config_path an absolute path that
    # does not exist (as in every released config.json), clips that bite, tanh in the CNN.
    "char_word": {
        "seed": 2002,
        "config": model_config({"cell_clip": 1.0, "proj_clip": 0.5}, {"word_dim": 8, "activation": "tanh"}),
        "config_path": "/users4/conll18st/elmo/configs/cnn_8_8_16_32_sample.json",
        "extra_chars": ["\u3000"],
        "extra_words": ["Hà Nội"],
        "legacy_pickle": True,
    },
    # encoder "lstm": torch.nn.LSTM + one shared projection; no released config uses it.
    "lstm_encoder": {
        "seed": 2003,
        "config": model_config({"name": "lstm"}, {"word_dim": 8}),
        "config_path": "cnn_8_8_lstm_16_32.json",
    },
    # char_dim 0: word table only (what the name cnn_0_100_512_4096_sample suggests; the released
    # file of that name holds char_dim 50).
    "word_only": {
        "seed": 2004,
        "config": model_config({}, {"word_dim": 8, "char_dim": 0}),
        "config_path": "cnn_0_8_16_32.json",
    },
}

#: The arguments ``biLM.train`` dumps as config.json (``vars(opt)``), released models' values.
TRAIN_ARGS = {
    "seed": 1,
    "gpu": -1,
    "train_path": "train.raw",
    "valid_path": None,
    "test_path": None,
    "config_path": None,
    "word_embedding": None,
    "optimizer": "adam",
    "lr": 0.001,
    "lr_decay": 0.8,
    "model": None,
    "batch_size": 32,
    "max_epoch": 10,
    "clip_grad": 5,
    "max_sent_len": 20,
    "min_count": 1,
    "max_vocab_size": 150000,
    "save_classify_layer": False,
    "valid_size": 0,
    "eval_steps": 10000,
}


def build_lexicons(
    train_path: Path, config: dict[str, Any], extra_chars: list[str], extra_words: list[str]
) -> tuple[dict[str, int], dict[str, int] | None]:
    """Word and character lexicons in the order ``biLM.train`` assigns ids (specials included)."""
    max_chars = config["token_embedder"]["max_characters_per_token"]
    train_data = read_corpus(str(train_path), max_chars, TRAIN_ARGS["max_sent_len"])
    word_lexicon: dict[str, int] = {}
    for special in ("<oov>", "<bos>", "<eos>", "<pad>"):
        word_lexicon[special] = len(word_lexicon)
    for word, _count in get_truncated_vocab(train_data, TRAIN_ARGS["min_count"]):
        word_lexicon.setdefault(word, len(word_lexicon))
    for word in extra_words:
        word_lexicon.setdefault(word, len(word_lexicon))
    if config["token_embedder"]["char_dim"] <= 0:
        return word_lexicon, None
    char_lexicon: dict[str, int] = {}
    for sentence in train_data:  # sentences hold "<bos>"/"<eos>", so '<', 'b', 'o', 's', '>', 'e' come first
        for word in sentence:
            for char in word:
                char_lexicon.setdefault(char, len(char_lexicon))
    for char in extra_chars:
        char_lexicon.setdefault(char, len(char_lexicon))
    for special in ("<bos>", "<eos>", "<oov>", "<pad>", "<bow>", "<eow>"):
        char_lexicon.setdefault(special, len(char_lexicon))
    return word_lexicon, char_lexicon


def write_lexicon(path: Path, lexicon: dict[str, int]) -> None:
    """``token<TAB>id`` lines in id order, UTF-8, as ``biLM.train`` prints them."""
    with codecs.open(str(path), "w", encoding="utf-8") as out:
        for token, index in lexicon.items():
            print(f"{token}\t{index}", file=out)


def randomize(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Redraw every parameter so gates, highways and clips are all exercised.

    Embeddings (the ``<pad>`` rows included: EFML never zeroes them) get std 0.5, biases 0.2,
    weights ``1.2 / sqrt(fan_in)``.
    """
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "embedding" in name:
                std = 0.5
            elif name.endswith("bias"):
                std = 0.2
            else:
                fan_in = param[0].numel()
                std = 1.2 / fan_in**0.5
            param.copy_(torch.randn(param.shape, generator=generator) * std)


def write_model_dir(case_dir: Path, case: dict[str, Any], train_path: Path) -> None:
    """Write one EFML model directory with EFML's own classes and save code."""
    config = case["config"]
    torch.manual_seed(case["seed"])
    word_lexicon, char_lexicon = build_lexicons(
        train_path, config, case.get("extra_chars", []), case.get("extra_words", [])
    )
    char_emb_layer = (
        EmbeddingLayer(config["token_embedder"]["char_dim"], char_lexicon, fix_emb=False) if char_lexicon else None
    )
    word_emb_layer = (
        EmbeddingLayer(config["token_embedder"]["word_dim"], word_lexicon, fix_emb=False)
        if config["token_embedder"]["word_dim"] > 0
        else None
    )
    model = TrainingModel(config, word_emb_layer, char_emb_layer, len(word_lexicon), use_cuda=False)
    generator = torch.Generator().manual_seed(case["seed"])
    randomize(model.token_embedder, generator)
    randomize(model.encoder, generator)

    case_dir.mkdir(parents=True)
    model.save_model(str(case_dir), False)  # torch.save(state_dict) of token_embedder and encoder
    if case.get("legacy_pickle"):
        # the released models were saved by torch 0.4: the pre-1.6 (non-zip) torch.save format
        for file in ("token_embedder.pkl", "encoder.pkl"):
            state = torch.load(case_dir / file, weights_only=True)
            torch.save(state, case_dir / file, _use_new_zipfile_serialization=False)
    if char_lexicon is not None:
        write_lexicon(case_dir / "char.dic", char_lexicon)
    write_lexicon(case_dir / "word.dic", word_lexicon)
    config_name = Path(case["config_path"]).name
    with open(case_dir / config_name, "w", encoding="utf-8") as out:
        json.dump(config, out, indent=2)
    train_args = {**TRAIN_ARGS, "config_path": case["config_path"], "model": f"tests/fixtures/efml/{case_dir.name}"}
    with codecs.open(str(case_dir / "config.json"), "w", encoding="utf-8") as out:
        json.dump(train_args, out)


def fresh_embedder(model_dir: Path, batch_size: int = 64) -> Embedder:
    """A new ``Embedder`` (zero LSTM state); EFML shuffles batch order with ``random``, so seed it."""
    random.seed(0)
    return Embedder(str(model_dir), batch_size=batch_size)


def model_ids(embedder: Embedder, sentence: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The char ids ``(n + 2, max_chars)`` and word ids ``(n + 2,)`` EFML feeds for one sentence."""
    config = embedder.config
    max_chars = config["token_embedder"]["max_characters_per_token"]
    dataset, _ = read_list([sentence], max_chars)
    words, chars, _, _ = create_one_batch(dataset, embedder.word_lexicon, embedder.char_lexicon, config)
    n = len(sentence) + 2
    char_ids = chars[0].numpy() if chars is not None else np.zeros((n, 0), dtype=np.int64)
    word_ids = words[0].numpy() if words is not None else np.zeros((0,), dtype=np.int64)
    return char_ids, word_ids


def max_abs(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """The largest absolute difference over paired arrays, in float64."""
    diffs = [np.abs(x.astype(np.float64) - y.astype(np.float64)).max(initial=0.0) for x, y in zip(a, b, strict=True)]
    return float(max(diffs))


class _ClampRecorder:
    """Stands in for ``torch`` inside EFML's LSTM cell and records what ``torch.clamp`` clips."""

    def __init__(self) -> None:
        self.counts: dict[float, list[int]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def clamp(self, tensor: torch.Tensor, low: float, high: float) -> torch.Tensor:
        hit, total = self.counts.setdefault(float(high), [0, 0])
        self.counts[float(high)] = [hit + int((tensor.abs() > high).sum()), total + tensor.numel()]
        return torch.clamp(tensor, low, high)


@contextlib.contextmanager
def recording_clamps() -> Iterator[_ClampRecorder]:
    recorder = _ClampRecorder()
    efml_cell_module.torch = recorder
    try:
        yield recorder
    finally:
        efml_cell_module.torch = torch


def golden_for_case(name: str, case_dir: Path) -> dict[str, Any]:
    """Run EFML on ``SENTENCES``; write golden.npz and golden_sentences.json; return measurements."""
    arrays: dict[str, np.ndarray] = {"n_sentences": np.array(len(SENTENCES))}
    embedder = fresh_embedder(case_dir)
    with torch.no_grad():
        layers = embedder.sents2elmo(SENTENCES, output_layer=-2)
        second_call = embedder.sents2elmo(SENTENCES, output_layer=-2)
        alone = [fresh_embedder(case_dir).sents2elmo([s], output_layer=-2)[0] for s in SENTENCES]
        several_batches = fresh_embedder(case_dir, batch_size=2).sents2elmo(SENTENCES, output_layer=-2)
    for i, sentence in enumerate(SENTENCES):
        char_ids, word_ids = model_ids(embedder, sentence)
        arrays[f"layers_{i:02d}"] = layers[i]
        arrays[f"alone_{i:02d}"] = alone[i]
        arrays[f"char_ids_{i:02d}"] = char_ids
        arrays[f"word_ids_{i:02d}"] = word_ids
    found = {
        "dtype": str(layers[0].dtype),
        "shapes": [list(x.shape) for x in layers],
        "max_abs_batch_vs_alone": max_abs(layers, alone),
        "max_abs_second_call_vs_first": max_abs(second_call, layers),
        "max_abs_batch_size_2_vs_alone": max_abs(several_batches, alone),
    }
    if name == "char_word":
        with torch.no_grad():
            average = fresh_embedder(case_dir).sents2elmo(SENTENCES, output_layer=-1)
            layer0 = fresh_embedder(case_dir).sents2elmo(SENTENCES, output_layer=0)
            double = fresh_embedder(case_dir)
            double.model.double()
            f64 = double.sents2elmo(SENTENCES, output_layer=-2)
        for i in range(len(SENTENCES)):
            arrays[f"average_{i:02d}"] = average[i]
            arrays[f"layer0_{i:02d}"] = layer0[i]
            arrays[f"f64_layers_{i:02d}"] = f64[i]
        found["f64_dtype"] = str(f64[0].dtype)
        found["max_abs_f32_vs_f64"] = max_abs(layers, f64)
        found["max_abs_average_vs_mean_of_layers"] = max_abs(average, [x.mean(axis=0) for x in layers])
        found["max_abs_layer0_vs_layers0"] = max_abs(layer0, [x[0] for x in layers])
    if case_dir_is_elmo(embedder):
        with recording_clamps() as recorder, torch.no_grad():
            fresh_embedder(case_dir).sents2elmo(SENTENCES, output_layer=-2)
        found["clip_hit_fraction"] = {f"{k:g}": hit / total for k, (hit, total) in recorder.counts.items()}
    np.savez_compressed(case_dir / "golden.npz", **arrays)
    with open(case_dir / "golden_sentences.json", "w", encoding="utf-8") as out:
        json.dump(SENTENCES, out, ensure_ascii=False, indent=1)
    return found


def case_dir_is_elmo(embedder: Embedder) -> bool:
    return embedder.config["encoder"]["name"].lower() == "elmo"


def check_round_trip(case_dir: Path) -> None:
    """The saved files load with plain ``torch.load(weights_only=True)``: OrderedDicts of tensors."""
    for file in ("token_embedder.pkl", "encoder.pkl"):
        state = torch.load(case_dir / file, weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values()), file
        assert all(v.dtype == torch.float32 for v in state.values()), file


#: The model config of the released models (``configs/cnn_50_100_512_4096_sample.json`` of the package).
RELEASED_CONFIG = Path(elmoformanylangs.__file__).parent / "configs" / "cnn_50_100_512_4096_sample.json"


def write_released_size_model(model_dir: Path, chars: dict[str, int], words: dict[str, int], seed: int = 0) -> None:
    """Write a model directory of the released shape (:data:`RELEASED_CONFIG`) into ``model_dir``.

    EFML's own random init (``torch.manual_seed(seed)``, then their ``EmbeddingLayer`` and
    ``biLM.Model``), saved by their ``save_model``; ``chars`` / ``words`` become char.dic / word.dic
    (specials included by the caller); the config file is copied in and ``config.json`` names it.
    """
    config = json.loads(RELEASED_CONFIG.read_text())
    torch.manual_seed(seed)
    model = TrainingModel(
        config,
        EmbeddingLayer(config["token_embedder"]["word_dim"], words, fix_emb=False),
        EmbeddingLayer(config["token_embedder"]["char_dim"], chars, fix_emb=False),
        len(words),
    )
    model.save_model(str(model_dir), False)
    del model
    write_lexicon(model_dir / "char.dic", chars)
    write_lexicon(model_dir / "word.dic", words)
    shutil.copy(RELEASED_CONFIG, model_dir / RELEASED_CONFIG.name)
    (model_dir / "config.json").write_text(json.dumps({**TRAIN_ARGS, "config_path": RELEASED_CONFIG.name}))


def benchmark(n_sentences: int = 200, n_tokens: int = 25, batch_size: int = 32, threads: int = 2) -> dict[str, Any]:
    """Time ``sents2elmo`` on a released-size model (the package's cnn_50_100_512_4096_sample.json).

    Random weights, 2000 characters, 20000 words; sentences of random lowercase words, 25 tokens.
    """
    torch.set_num_threads(threads)
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyzäöüéèàçñ"
    sentences = [
        ["".join(rng.choice(letters) for _ in range(rng.randint(1, 12))) for _ in range(n_tokens)]
        for _ in range(n_sentences)
    ]
    # printable, non-space characters only: EFML's .dic reader cannot hold whitespace or line breaks
    printable = [c for c in map(chr, range(0x21, 0x3000)) if c.isprintable() and not c.isspace()]
    chars = {c: i for i, c in enumerate(printable[:2000])}
    for special in ("<bos>", "<eos>", "<oov>", "<pad>", "<bow>", "<eow>"):
        chars[special] = len(chars)
    words = {w: i for i, w in enumerate(["<oov>", "<bos>", "<eos>", "<pad>", *[f"w{i}" for i in range(20000)]])}
    with tempfile.TemporaryDirectory() as tmp:
        write_released_size_model(Path(tmp), chars, words, seed=0)

        # --- the snippet quoted in /tmp/brief/efml_facts.md ---
        embedder = Embedder(tmp, batch_size=batch_size)
        embedder.sents2elmo(sentences[:batch_size], output_layer=-2)  # warm-up
        runs = []
        for _ in range(3):
            embedder.model.encoder.reset_states()
            start = time.perf_counter()
            embedder.sents2elmo(sentences, output_layer=-2)
            runs.append(time.perf_counter() - start)
        # --- end of snippet ---
    seconds = float(np.median(runs))
    return {
        "config": RELEASED_CONFIG.name,
        "threads": threads,
        "batch_size": batch_size,
        "n_sentences": n_sentences,
        "tokens_per_sentence": n_tokens,
        "seconds_runs": runs,
        "seconds_median": seconds,
        "sentences_per_s": n_sentences / seconds,
        "tokens_per_s": n_sentences * n_tokens / seconds,
        "torch_no_grad": False,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=FIXTURE_DIR, help="fixture directory (default: %(default)s)")
    parser.add_argument("--benchmark", action="store_true", help="also time a released-size model (~1-3 min)")
    args = parser.parse_args(argv)
    logging.getLogger("elmoformanylangs").setLevel(logging.ERROR)

    out: Path = args.out
    previous = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
    staging = Path(tempfile.mkdtemp(prefix=".efml-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private
    try:
        train_path = staging / "train.raw"
        train_path.write_text(TRAIN_TEXT, encoding="utf-8")
        cases: dict[str, Any] = {}
        for name, case in CASES.items():
            case_dir = staging / name
            write_model_dir(case_dir, case, train_path)
            check_round_trip(case_dir)
            cases[name] = {
                "seed": case["seed"],
                "config_path": case["config_path"],
                "config": case["config"],
                "extra_chars": case.get("extra_chars", []),
                "extra_words": case.get("extra_words", []),
                "legacy_pickle": bool(case.get("legacy_pickle")),
                **golden_for_case(name, case_dir),
            }
            print(f"{name}: {json.dumps({k: v for k, v in cases[name].items() if k.startswith('max_abs')})}")
        manifest = {
            "generator": "scripts/make_efml_fixtures.py",
            "oracle": "elmoformanylangs.Embedder.sents2elmo",
            "oracle_venv": {
                **(json.loads(ORACLE_VENV_INFO.read_text()) if ORACLE_VENV_INFO.exists() else {}),
                "elmoformanylangs": "0.0.4.post2",
                "torch": torch.__version__,
            },
            "date": datetime.date.today().isoformat(),
            "n_tokens": [len(s) for s in SENTENCES],
            "cases": cases,
        }
        if args.benchmark:
            manifest["benchmark"] = benchmark()
            print("benchmark:", json.dumps(manifest["benchmark"]))
        elif "benchmark" in previous:
            manifest["benchmark"] = previous["benchmark"]
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        total = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
        if total > MAX_TOTAL_BYTES:
            raise SystemExit(f"fixtures are {total} bytes, over the {MAX_TOTAL_BYTES} byte budget")
        # swap the whole directory in at once, so a failed run leaves the old fixtures intact
        if out.exists():
            backup = out.with_name(out.name + ".old")
            out.rename(backup)
            staging.rename(out)
            shutil.rmtree(backup)
        else:
            staging.rename(out)
        print(f"wrote {out} ({total} bytes)")
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return 0


if __name__ == "__main__":
    sys.exit(main())
