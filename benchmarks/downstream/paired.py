"""Paired downstream studies: POS taggers trained on one kind of ELMo vectors, evaluated on each kind.

The machinery shared by :mod:`benchmarks.downstream.precision` (fp32 vs bf16 vectors) and
:mod:`benchmarks.downstream.state` (stateless vs stateful vectors). A :class:`Study` names its
kinds of vectors, its ways (the kind a tagger trains on, the kind its test vectors are) and how
its layer caches are filled; everything else is here: the Brown POS data, taggers and seeds of
:mod:`benchmarks.downstream.run`, one tagger per (mode, seed, kind trained on) evaluated in each
of its ways, checks from the caches' hit and miss counts that training and every evaluation read
the layers of the intended kind and ran no biLM, the per-layer difference between two kinds over
the test sentences, accuracy differences paired by seed, and the JSON and markdown report.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flair.data import Sentence
from flair.models import SequenceTagger

from benchmarks import corpora
from benchmarks._common import DEFAULT_CACHE, publish
from benchmarks.downstream import run
from benchmarks.downstream.report import CONFIG_LABELS, EXTRA_MODES, METRICS, MODES, mean_std
from flair_elmo_modes.bilm.cpu import cpu_flags
from flair_elmo_modes.bilm.hdf5 import load_bilm
from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.layer_cache import LayerCache
from flair_elmo_modes.models import SHIPPED_MODEL, resolve_model
from flair_elmo_modes.runner import BiLmRunner

STUDY_MODES = (*MODES, *EXTRA_MODES)


@dataclass
class Caches:
    """A study's filled layer caches: per kind, the one training reads (train and dev sentences)
    and the one evaluation reads (test sentences), which may be the same; ``info`` goes to the
    report's ``cache`` block."""

    train: dict[str, run.SharedElmo]
    test: dict[str, run.SharedElmo]
    info: dict[str, Any]


@dataclass(frozen=True)
class Study:
    """What one paired study compares.

    Attributes:
        module: the module under ``benchmarks.downstream`` that runs it (its command and log).
        result_name: the report's file name, without suffix.
        title: the markdown's heading.
        kinds: the kinds of vectors a tagger trains on, in the order trained.
        ways: way -> (kind the tagger trained on, kind of its test vectors).
        way_labels: way -> its label, starting with "(a)", "(b)"...
        compared: difference name -> (way, the way it is paired with by seed), in points.
        layer_pair: (reference kind, other kind) whose test layers the report compares.
        fill: fills the caches of every kind: ``fill(task, bilm, model_name, args, log)``.
        vectors_note: the sentences of the report's first paragraph that say what the kinds are,
            from the report.
        differences_title: the heading of the differences section.
        differences_note: the paragraph that says how to read the differences.
        caches_note: the paragraph of the "Layer caches" section, from the report.
        goal_points: a bound on the differences that the report checks, or None.
        add_arguments: adds the study's own options to its command line.
    """

    module: str
    result_name: str
    title: str
    kinds: tuple[str, ...]
    ways: dict[str, tuple[str, str]]
    way_labels: dict[str, str]
    compared: dict[str, tuple[str, str]]
    layer_pair: tuple[str, str]
    fill: Callable[[run.TaskData, ElmoBiLm, str, argparse.Namespace, logging.Logger], Caches]
    vectors_note: Callable[[dict[str, Any]], str]
    differences_title: str
    differences_note: str
    caches_note: Callable[[dict[str, Any]], str]
    goal_points: float | None = None
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"downstream.{self.module}")

    def short_label(self, way: str) -> str:
        return self.way_labels[way].split(" ")[0]


# ----------------------------------------------------------------------------------------------
# layers


def layer_differences(
    reference: LayerCache, other: LayerCache, sentences: Sequence[Sentence]
) -> list[dict[str, float]]:
    """Per biLM layer, over every token of ``sentences`` (each distinct sentence once): mean and max
    ``|other - reference|``, mean and max ``|reference|``, and the relative errors mean/mean and
    L2 norm/norm."""
    totals: dict[str, torch.Tensor] = {}
    elements = 0
    for tokens in dict.fromkeys(tuple(token.text for token in sentence) for sentence in sentences):
        exact, changed = reference.get(tokens), other.get(tokens)
        if exact is None or changed is None:
            raise RuntimeError(f"sentence not in both caches: {' '.join(tokens)[:80]}")
        exact, changed = exact.double(), changed.double()  # (layers, tokens, dim)
        error = (changed - exact).abs()
        parts = {
            "abs_diff": error.sum(dim=(1, 2)),
            "max_abs_diff": error.amax(dim=(1, 2)),
            "abs_value": exact.abs().sum(dim=(1, 2)),
            "max_abs_value": exact.abs().amax(dim=(1, 2)),
            "squared_diff": error.square().sum(dim=(1, 2)),
            "squared_value": exact.square().sum(dim=(1, 2)),
        }
        for name, value in parts.items():
            if name not in totals:
                totals[name] = value
            elif name.startswith("max"):
                totals[name] = torch.maximum(totals[name], value)
            else:
                totals[name] = totals[name] + value
        elements += exact.shape[1] * exact.shape[2]
    return [
        {
            "layer": layer,
            "mean_abs_diff": totals["abs_diff"][layer].item() / elements,
            "max_abs_diff": totals["max_abs_diff"][layer].item(),
            "mean_abs_value": totals["abs_value"][layer].item() / elements,
            "max_abs_value": totals["max_abs_value"][layer].item(),
            "relative_mean_abs_diff": (totals["abs_diff"][layer] / totals["abs_value"][layer]).item(),
            "relative_l2_diff": (totals["squared_diff"][layer] / totals["squared_value"][layer]).sqrt().item(),
        }
        for layer in range(len(totals["abs_diff"]))
    ]


# ----------------------------------------------------------------------------------------------
# evaluation


def lend(tagger: SequenceTagger, elmo: run.SharedElmo) -> None:
    """Make the trained ``tagger``'s ELMo compute, and look its layers up, as ``elmo`` does (its
    precision, its cache)."""
    embeddings = run.find_elmo(tagger.embeddings)
    assert embeddings is not None
    embeddings.runner = BiLmRunner(embeddings.bilm, precision=elmo.precision)
    embeddings.precision = embeddings.runner.precision
    embeddings.layer_cache = elmo.cache


def lookups(elmos: dict[str, run.SharedElmo]) -> dict[str, tuple[int, int]]:
    return {kind: (elmo.cache.hits, elmo.cache.misses) for kind, elmo in elmos.items()}


def evaluate(tagger: SequenceTagger, task: run.TaskData, elmos: dict[str, run.SharedElmo], kind: str) -> dict[str, Any]:
    """POS accuracy of ``tagger`` on the test set embedded as ``kind``; checks from the cache
    counts that every test sentence came from that kind's cache, and no biLM ran.

    Raises:
        RuntimeError: a look-up went to another kind's cache, or missed.
    """
    lend(tagger, elmos[kind])
    run.clear_embeddings(task)  # "all" is static: Flair would keep vectors already on the tokens
    before = lookups(elmos)
    scores = run.pos_accuracy(tagger, task, 64)
    after = lookups(elmos)
    counts = {k: {"hits": after[k][0] - before[k][0], "misses": after[k][1] - before[k][1]} for k in elmos}
    expected = {k: {"hits": len(task.test) if k == kind else 0, "misses": 0} for k in elmos}
    if counts != expected:
        raise RuntimeError(f"evaluation at {kind}: cache look-ups {counts}, expected {expected}")
    run.clear_embeddings(task)
    return {**scores, "cache_lookups": counts}


def train(
    task: run.TaskData, config: str, seed: int, elmo: run.SharedElmo, settings: run.Settings, work_dir: Path
) -> tuple[SequenceTagger, float, dict[str, int]]:
    """:func:`run.train_tagger` on ``elmo``'s vectors, and its cache look-ups during training.

    Raises:
        RuntimeError: a training or dev sentence missed the cache (the tagger's biLM ran: the
            vectors were not all of the intended kind).
    """
    hits, misses = elmo.cache.hits, elmo.cache.misses
    tagger, seconds = run.train_tagger(task, config, seed, elmo, settings, work_dir)
    counts = {"hits": elmo.cache.hits - hits, "misses": elmo.cache.misses - misses}
    if counts["misses"]:
        raise RuntimeError(f"training {config} seed {seed}: {counts['misses']} cache misses (the biLM ran)")
    return tagger, seconds, counts


# ----------------------------------------------------------------------------------------------
# summary


def confidence_interval(values: Sequence[float]) -> list[float] | None:
    """The 95% confidence interval of the mean of ``values`` (Student's t; None below 2 values)."""
    if len(values) < 2:
        return None
    from scipy.stats import t  # Flair's scikit-learn brings scipy

    mean, std = mean_std(values)
    half = t.ppf(0.975, len(values) - 1) * std / len(values) ** 0.5
    return [float(mean - half), float(mean + half)]


def summarise(runs: Sequence[dict[str, Any]], configs: Sequence[str], study: Study) -> dict[str, Any]:
    """``{config: {"ways": {way: {metric: {mean, std, n}}}, "differences": {name: {metric: {...}}}}}``;
    differences are in accuracy points (x100), per seed, paired by seed as ``study.compared`` says."""
    goal = study.goal_points
    summary: dict[str, Any] = {}
    for config in configs:
        by_way = {way: {r["seed"]: r for r in runs if r["config"] == config and r["way"] == way} for way in study.ways}
        ways: dict[str, Any] = {}
        for way, records in by_way.items():
            ways[way] = {}
            for metric in METRICS["pos"]:
                values = [r[metric] for r in records.values() if r[metric] is not None]
                mean, std = mean_std(values) if values else (None, None)
                ways[way][metric] = {"mean": mean, "std": std, "n": len(values)}
        differences: dict[str, Any] = {}
        for name, (way, reference) in study.compared.items():
            differences[name] = {}
            for metric in METRICS["pos"]:
                base = by_way[reference]
                seeds = [s for s in base if s in by_way[way] and base[s][metric] is not None]
                points = [100 * (by_way[way][s][metric] - base[s][metric]) for s in seeds]
                mean, std = mean_std(points) if points else (None, None)
                ci = confidence_interval(points)
                differences[name][metric] = {
                    "per_seed": dict(zip(map(str, seeds), points, strict=True)),
                    "mean": mean,
                    "std": std,
                    "ci95": ci,
                    "within_goal": None if mean is None or goal is None else abs(mean) <= goal,
                    "ci95_within_goal": None if ci is None or goal is None else -goal <= ci[0] and ci[1] <= goal,
                }
        summary[config] = {"ways": ways, "differences": differences}
    return summary


def _cell(value: dict[str, Any]) -> str:
    return "–" if value["mean"] is None else f"{100 * value['mean']:.2f} ± {100 * value['std']:.2f}"


def _points(value: float) -> str:
    return f"{value:+.2f}"


def changed_while_running(report: dict[str, Any]) -> str:
    """What of the checkout changed between the start and the end of the run (the run had imported
    its code at the start)."""
    start, end = report["code"], report["code_at_end"]
    parts = []
    if end.get("commit") != start.get("commit"):
        parts.append(f"commit {end.get('commit', '?')[:12]} at the end")
    files = sorted(set(end.get("modified", [])) - set(start.get("modified", [])))
    if files:
        parts.append(f"{', '.join(files)} modified")
    return "while it ran, after its imports: " + "; ".join(parts or ["changes"])


def _goal(value: dict[str, Any]) -> str:
    if value["within_goal"] is None:
        return "–"
    if not value["within_goal"]:
        return "**outside**"
    return "within" if value.get("ci95_within_goal") else "mean within"


def markdown(report: dict[str, Any], study: Study) -> str:
    settings, model, hardware = report["settings"], report["model"], report["hardware"]
    cpu = hardware["system"]["cpu"]
    pos = report["data"]["pos"]
    lines = [
        f"# {study.title}",
        "",
        f"Model `{model['name']}` ({model['description']}). Brown POS as in `downstream.md`: train "
        f"{pos['train']['sentences']} sentences, dev {pos['dev']['sentences']}, test {pos['test']['sentences']} "
        f"sentences / {pos['test']['tokens']} tokens ({pos['test_oov_tokens']} OOV). Seeds "
        f"{', '.join(map(str, settings['seeds']))}, {settings['epochs']} epochs; accuracy in %, mean ± sample std "
        f"over seeds. {study.vectors_note(report)} Run time {report['run_seconds'] / 60:.1f} min on {hardware['cpu']} "
        f"({hardware['torch_threads']} torch thread, {hardware['cpus']} cores; native bf16: "
        f"{cpu['native_bf16']}, torch CPU capability {cpu['torch_capability']}).",
        "",
        "| ELMo mode | way | POS accuracy | POS OOV accuracy |",
        "|---|---|---:|---:|",
    ]
    for config in settings["configs"]:
        for way, entry in report["summary"][config]["ways"].items():
            lines.append(
                f"| {CONFIG_LABELS[config]} | {study.way_labels[way]} | {_cell(entry['accuracy'])} | "
                f"{_cell(entry['oov_accuracy'])} |"
            )
    seeds = [str(s) for s in settings["seeds"]]
    goal = study.goal_points is not None
    lines += [
        "",
        f"## {study.differences_title}",
        "",
        study.differences_note,
        "",
        "| ELMo mode | difference | metric | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " | mean ± std | 95% CI |"
        + (" goal |" if goal else ""),
        "|---|---|---|" + "---:|" * len(seeds) + "---:|---:|" + ("---|" if goal else ""),
    ]
    for config in settings["configs"]:
        for name, metrics in report["summary"][config]["differences"].items():
            way, reference = study.compared[name]
            label = f"{study.short_label(way)} − {study.short_label(reference)}"
            for metric, value in metrics.items():
                cells = [_points(value["per_seed"][s]) if s in value["per_seed"] else "–" for s in seeds]
                mean = "–" if value["mean"] is None else f"{_points(value['mean'])} ± {value['std']:.2f}"
                ci = value.get("ci95")
                interval = "–" if ci is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"
                metric_name = "accuracy" if metric == "accuracy" else "OOV accuracy"
                lines.append(
                    f"| {CONFIG_LABELS[config]} | {label} | {metric_name} | {' | '.join(cells)} | {mean} | {interval} |"
                    + (f" {_goal(value)} |" if goal else "")
                )
    layers = report["layers"]
    reference, other = study.layer_pair
    lines += [
        "",
        f"## {other} vs {reference} layers over the {layers['sentences']} distinct test sentences "
        f"({layers['tokens']} tokens)",
        "",
        "Layer 0 = character CNN (context-free), 1.. = LSTM layers; each a (tokens × dim) float32 array.",
        "",
        f"| layer | mean \\|{other} − {reference}\\| | max \\|{other} − {reference}\\| | mean \\|{reference}\\| | "
        f"max \\|{reference}\\| | mean diff / mean value | L2 relative |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in layers["per_layer"]:
        lines.append(
            f"| {row['layer']} | {row['mean_abs_diff']:.3g} | {row['max_abs_diff']:.3g} | "
            f"{row['mean_abs_value']:.3g} | {row['max_abs_value']:.3g} | {row['relative_mean_abs_diff']:.2e} | "
            f"{row['relative_l2_diff']:.2e} |"
        )
    lines += [
        "",
        "## Layer caches",
        "",
        study.caches_note(report),
        "",
        "## Settings",
        "",
        "As `downstream.md`: SequenceTagger BiLSTM hidden {hidden_size}, no CRF, {optimizer} lr {learning_rate}, "
        "batch {mini_batch_size}, Flair's anneal-on-plateau on dev, final-epoch model evaluated; POS test = whole "
        "held-out Brown files of the LM's split ({files}).".format(files=", ".join(pos["files"]["test"]), **settings),
        "",
        f"CPU: {hardware['cpu']}; flags shown by `flair-elmo info --system`: {', '.join(cpu['flags'] or [])} "
        f"(all flags in the JSON). torch {hardware['torch']}, flair {hardware['flair']}, Python {hardware['python']}.",
        "",
        f"Command: `{report['command']}`; code {report['code'].get('commit', '?')[:12]}"
        + (f" with changes to {', '.join(report['code']['modified'])}" if report["code"].get("modified") else "")
        + (f" ({changed_while_running(report)})" if "code_at_end" in report else "")
        + f"; weights.hdf5 sha256 `{model['weights_sha256'][:16]}…`.",
        "",
    ]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: Path, study: Study) -> dict[str, Path]:
    return publish(out, study.result_name, report, markdown(report, study), echo=False)


# ----------------------------------------------------------------------------------------------
# the experiment


def run_study(args: argparse.Namespace, study: Study) -> dict[str, Any]:
    """Every way for every configuration and seed; torch's thread count is ``--threads`` during
    the run and restored afterwards."""
    settings = run.settings_from(argparse.Namespace(**vars(args), task="pos", optimizer=None, learning_rate=None))
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _run_study(args, settings, study)
    finally:
        torch.set_num_threads(threads)


def _run_study(args: argparse.Namespace, settings: run.Settings, study: Study) -> dict[str, Any]:
    log = study.log
    started = time.perf_counter()
    code = run.code_state()  # before the run: the checkout may change while it runs
    files = resolve_model(args.model)
    (task,) = run.load_tasks(args, settings, files.options_file.parent)
    bilm = load_bilm(files.options_file, files.weight_file)
    caches = study.fill(task, bilm, files.name, args, log)
    reference, other = study.layer_pair
    per_layer = layer_differences(caches.test[reference].cache, caches.test[other].cache, task.test)
    for row in per_layer:
        log.info("layer %s", {k: float(f"{v:.4g}") for k, v in row.items()})
    distinct = {tuple(token.text for token in sentence) for sentence in task.test}
    layers = {"sentences": len(distinct), "tokens": sum(map(len, distinct)), "per_layer": per_layer}

    runs: list[dict[str, Any]] = []
    total = len(settings.configs) * len(settings.seeds) * len(study.ways)
    with tempfile.TemporaryDirectory(prefix=f"downstream-{study.module}-") as work:
        for config in settings.configs:
            for seed in settings.seeds:
                for trained_on in study.kinds:
                    tagger, seconds, training = train(
                        task,
                        config,
                        seed,
                        caches.train[trained_on],
                        settings,
                        Path(work) / f"{config}-{seed}-{trained_on}",
                    )
                    for way, (way_trained, tested_on) in study.ways.items():
                        if way_trained != trained_on:
                            continue
                        record = {
                            "config": config,
                            "seed": seed,
                            "way": way,
                            "trained_on": trained_on,
                            "tested_on": tested_on,
                            **evaluate(tagger, task, caches.test, tested_on),
                            "train_seconds": seconds,
                            "train_cache_lookups": training,
                        }
                        runs.append(record)
                        log.info(
                            "[%d/%d] %s seed %d %s: accuracy %.4f, OOV %.4f (trained in %.0f s)",
                            len(runs),
                            total,
                            config,
                            seed,
                            way,
                            record["accuracy"],
                            record["oov_accuracy"] or float("nan"),
                            seconds,
                        )
                    run.clear_embeddings(task)

    hardware = run.hardware(torch.get_num_threads())
    flags = cpu_flags()
    hardware["cpu_flags"] = None if flags is None else sorted(flags)
    code_at_end = run.code_state()
    ways = study.ways.items()
    command = f"python -m benchmarks.downstream.{study.module} " + " ".join(args.argv)
    return {
        "model": run.model_record(files, bilm),
        "settings": dataclasses.asdict(settings),
        "ways": {way: {"trained_on": t, "tested_on": e, "label": study.way_labels[way]} for way, (t, e) in ways},
        "differences": {name: {"way": way, "minus": reference} for name, (way, reference) in study.compared.items()},
        "goal_points": study.goal_points,
        "data": {"pos": task.info},
        "hardware": hardware,
        "code": code,
        **({"code_at_end": code_at_end} if code_at_end != code else {}),
        "cache": caches.info,
        "layers": layers,
        "runs": runs,
        "summary": summarise(runs, settings.configs, study),
        "command": run.portable(command, args.cache_dir),
        "run_seconds": time.perf_counter() - started,
    }


# ----------------------------------------------------------------------------------------------
# command line


def parse_modes(text: str) -> tuple[str, ...]:
    configs = run.parse_configs(text)
    if not set(configs) <= set(STUDY_MODES):
        raise argparse.ArgumentTypeError(f"ELMo layer modes alone only ({', '.join(STUDY_MODES)}), got {text!r}")
    return configs


def build_parser(study: Study, doc: str) -> argparse.ArgumentParser:
    """The command line of ``study``, whose module docstring is ``doc`` (with an ``Examples:`` block)."""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + "\n".join(doc.split("Examples:\n")[1].split("\n\n")[0].splitlines()),
    )
    parser.add_argument(
        "--configs", type=parse_modes, default=("all", "mix"), help="ELMo layer modes (default all,mix)"
    )
    parser.add_argument("--seeds", type=run.parse_seeds, default=None, help="N (seeds 1..N) or a list (default 3)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs per tagger (default 6)")
    parser.add_argument("--max-train-sentences", type=int, default=None, help="default 1500")
    parser.add_argument("--max-dev-sentences", type=int, default=None, help="default 300")
    parser.add_argument("--max-test-sentences", type=int, default=None, help="whole test files up to (default 2000)")
    parser.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch, 1 seed, small tagger")
    parser.add_argument("--model", default=SHIPPED_MODEL, help=f"ELMo model name or directory ({SHIPPED_MODEL})")
    parser.add_argument("--lm-split", type=Path, default=None, help="the LM's Brown split (default: split.json)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"downloads (default {DEFAULT_CACHE})")
    parser.add_argument("--brown-dir", type=Path, default=None, help="Brown files here instead of fetching")
    parser.add_argument("--out", type=Path, default=run.DEFAULT_OUT, help=f"output directory ({run.DEFAULT_OUT})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--verbose", action="store_true", help="show Flair's training log")
    if study.add_arguments is not None:
        study.add_arguments(parser)
    return parser


def main(study: Study, doc: str, argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(study, doc).parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if not args.verbose:
        logging.getLogger("flair").setLevel(logging.WARNING)
    try:
        report = run_study(args, study)
    except (corpora.DataFetchError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    paths = write_report(report, args.out, study)
    print(markdown(report, study).split("\n## Layer caches")[0])
    print("\n".join(f"wrote {path}" for path in paths.values()))
    return 0
