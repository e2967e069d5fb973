"""Domain adaptation of en-tiny (``flair-elmo train --init-from``), measured by perplexity and taggers.

1. Adapt en-tiny (its vocabulary and softmax reused) on unlabeled text: the Brown training files of
   its ``split.json`` (for POS), and the words of the WNUT-16 training tweets only (for NER, as the
   paper fine-tuned the biLM on task data). The adapted models are for this evaluation only.
2. Perplexity of en-tiny and of each adapted model on held-out text: the Brown test files of the
   split, the WNUT-16 test tweets.
3. Taggers (``python -m benchmarks.downstream``): "baseline + ELMo mix" with en-tiny vs the adapted
   model, 3 seeds, POS on the 19 held-out Brown files and NER on the WNUT-16 split; and, for why
   ELMo-only NER taggers score F1 0, "ELMo mix" against "ELMo mix-ln" (each layer normalised
   per sentence before mixing) on en-tiny.

Run from the repository root::

    python -m benchmarks.downstream.adapt --cache-dir DIR --out DIR/adapt

Writes ``adaptation.json`` and ``adaptation.md`` to ``--results`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import corpora
from benchmarks._common import DEFAULT_CACHE, RESULTS, log, machine_info, markdown_table, publish
from flair_elmo_modes.catalogue import SHIPPED_DIR, SHIPPED_MODEL
from flair_elmo_modes.training import evaluate, load_language_model
from flair_elmo_modes.training.data import EncodedCorpus
from flair_elmo_modes.training.shards import ShardedText

SHIPPED = SHIPPED_DIR / SHIPPED_MODEL


def write_lines(path: Path, sentences: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(" ".join(s) for s in sentences) + "\n", encoding="utf-8")
    return path


def texts(args: argparse.Namespace) -> dict[str, Path]:
    """Brown train/test text of en-tiny's split and the WNUT-16 train/test tweets, one sentence per line."""
    brown_dir = args.brown_dir or corpora.fetch_brown(args.cache_dir)
    split = corpora.read_lm_split(SHIPPED / "split.json", corpora.brown_file_ids(brown_dir))
    brown = corpora.write_brown_texts(brown_dir, {"brown-train": split.train, "brown-test": split.test}, args.out)
    wnut = corpora.split_wnut(corpora.read_wnut(args.wnut_file or corpora.fetch_wnut(args.cache_dir)))
    return {
        **brown,
        "wnut-train": write_lines(args.out / "wnut-train.txt", [s.tokens for s in wnut.train]),
        "wnut-test": write_lines(args.out / "wnut-test.txt", [s.tokens for s in wnut.test]),
    }


def adapt(name: str, text: Path, args: argparse.Namespace, minutes: float, epochs: int) -> tuple[Path, dict[str, Any]]:
    """``flair-elmo train --init-from en-tiny --reuse-softmax`` on ``text``; the model directory and result."""
    output = args.out / f"adapted-{name}"
    command = [sys.executable, "-m", "flair_elmo_modes", "train", str(text), "--output", str(output)]
    command += ["--init-from", SHIPPED_MODEL, "--reuse-softmax", "--lr", str(args.lr), "--epochs", str(epochs)]
    command += ["--max-minutes", str(minutes), "--batch-size", "32", "--threads", str(args.threads), "--no-progress"]
    command += ["--seed", "1", "--checkpoint-every", "0"]
    log(f"adapting en-tiny on {text.name}: {' '.join(command[3:])}")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"adaptation failed: {done.stderr[-2000:]}")
    return output / "model", json.loads(done.stdout)


def perplexities(models: dict[str, Path], held_out: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Mean perplexity (both directions) of each model's LM on each held-out text."""
    table: dict[str, dict[str, float]] = {}
    for name, directory in models.items():
        model, vocab = load_language_model(directory)
        table[name] = {}
        for text_name, path in held_out.items():
            corpus = EncodedCorpus.build(list(ShardedText((path,)).sentences()), vocab)
            result = evaluate(model, corpus)
            table[name][text_name] = result.mean
            log(f"perplexity {name} on {text_name}: {result.mean:.1f} ({corpus.n_unk / corpus.n_tokens:.1%} <UNK>)")
    return table


def taggers(task: str, model: Path, configs: str, label: str, args: argparse.Namespace) -> dict[str, Any]:
    """One ``python -m benchmarks.downstream`` run; its summary."""
    out = args.out / f"{task}-{label}"
    command = [sys.executable, "-m", "benchmarks.downstream", "--task", task, "--configs", configs]
    command += ["--seeds", str(args.seeds), "--model", str(model), "--lm-split", str(SHIPPED / "split.json")]
    command += ["--cache-dir", str(args.cache_dir), "--out", str(out), "--threads", str(args.threads)]
    command += ["--smoke"] if args.smoke else []
    log(f"taggers: {task} {configs} on {label}")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"taggers failed: {done.stderr[-2000:]}")
    return json.loads((out / "downstream.json").read_text(encoding="utf-8"))["summary"][task]


def cell(summary: dict[str, Any], config: str, metric: str) -> str:
    value = summary[config][metric]
    return f"{100 * value['mean']:.2f} ± {100 * value['std']:.2f}"


def report(results: dict[str, Any]) -> str:
    ppl = results["perplexity"]
    held_out = list(next(iter(ppl.values())))
    rows = [[name, *(f"{ppl[name][t]:.1f}" for t in held_out)] for name in ppl]
    parts = [markdown_table(["model", *(f"perplexity on {t}" for t in held_out)], rows)]
    pos, ner = results["pos"], results["ner"]
    labels = {"en-tiny": "en-tiny", "adapted": "en-tiny adapted (POS: Brown train text; NER: WNUT train tweets)"}
    rows = [
        [
            label,
            *(cell(pos[key], "baseline+mix", m) for m in ("accuracy", "oov_accuracy")),
            cell(ner[key], "baseline+mix", "f1"),
        ]
        for key, label in labels.items()
    ]
    parts.append(markdown_table(["baseline + ELMo mix with", "POS accuracy", "POS OOV accuracy", "NER span F1"], rows))
    probe = results["ner_probe"]
    rows = [[config, cell(probe, config, "f1")] for config in probe]
    parts.append(markdown_table(["ELMo-only NER tagger (en-tiny)", "span F1"], rows))
    return "\n\n".join(parts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, required=True, help="work directory (texts, adapted models, tagger runs)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--brown-dir", type=Path, default=None)
    parser.add_argument("--wnut-file", type=Path, default=None)
    parser.add_argument("--lr", type=float, default=3e-4, help="adaptation learning rate (en-tiny trained at 1e-3)")
    parser.add_argument("--brown-minutes", type=float, default=8.0)
    parser.add_argument("--wnut-epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a quick check of the pipeline: tiny runs throughout")
    args = parser.parse_args(argv)
    if args.smoke:
        args.brown_minutes, args.wnut_epochs, args.seeds = 0.1, 1, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine_info(), "settings": {k: str(v) for k, v in vars(args).items()}}
    paths = texts(args)
    brown_model, results["adapt_brown"] = adapt("brown", paths["brown-train"], args, args.brown_minutes, 3)
    wnut_model, results["adapt_wnut"] = adapt("wnut", paths["wnut-train"], args, 30.0, args.wnut_epochs)
    models = {"en-tiny": SHIPPED, "adapted on Brown train": brown_model, "adapted on WNUT train": wnut_model}
    results["perplexity"] = perplexities(
        models, {"Brown test files": paths["brown-test"], "WNUT test": paths["wnut-test"]}
    )
    results["pos"] = {
        "en-tiny": taggers("pos", SHIPPED, "baseline+mix", "en-tiny", args),
        "adapted": taggers("pos", brown_model, "baseline+mix", "adapted", args),
    }
    results["ner"] = {
        "en-tiny": taggers("ner", SHIPPED, "baseline+mix", "en-tiny", args),
        "adapted": taggers("ner", wnut_model, "baseline+mix", "adapted", args),
    }
    results["ner_probe"] = taggers("ner", SHIPPED, "mix,mix-ln,baseline+mix-ln", "probe", args)
    text = report(results)
    publish(args.results, "adaptation", results, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
