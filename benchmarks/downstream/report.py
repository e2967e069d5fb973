"""The downstream experiment's report: what it measures, the summary over seeds, the table and the plot.

Everything here works on the JSON report alone, so ``--from-json`` redraws a report, or merges
runs of one task each (run side by side), without training anything.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import publish

MODES = ("all", "top", "average", "bottom", "mix")
CONFIGS = ("baseline", *MODES, *(f"baseline+{mode}" for mode in MODES))
# "mix" with each layer normalised per sentence before mixing (mix_layer_norm=True): on request only.
EXTRA_MODES = ("mix-ln",)
KNOWN_CONFIGS = (*CONFIGS, *EXTRA_MODES, *(f"baseline+{mode}" for mode in EXTRA_MODES))
TASKS = ("pos", "ner")
RESULT_NAME = "downstream"

METRICS = {"pos": ("accuracy", "oov_accuracy"), "ner": ("f1",)}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{task: {config: {metric: {"mean", "std", "n"}, "train_seconds": ..., "mix_weights": ...}}}``."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        summary.setdefault(run["task"], {}).setdefault(run["config"], {"_runs": []})["_runs"].append(run)
    for configs in summary.values():
        for entry in configs.values():
            group = entry.pop("_runs")
            for metric in METRICS[group[0]["task"]]:
                values = [r[metric] for r in group if r[metric] is not None]  # None: no OOV test tokens
                mean, std = mean_std(values) if values else (None, None)
                entry[metric] = {"mean": mean, "std": std, "n": len(values)}
            entry["train_seconds"] = statistics.mean(r["train_seconds"] for r in group)
            entry["embedding_length"] = group[0]["embedding_length"]
            if "mix_weights" in group[0]:
                entry["mix_weights"] = [
                    statistics.mean(ws) for ws in zip(*(r["mix_weights"] for r in group), strict=True)
                ]
                entry["mix_gamma"] = statistics.mean(r["mix_gamma"] for r in group)
    return summary


def _cell(entry: dict[str, Any] | None, metric: str) -> str:
    if entry is None or metric not in entry or entry[metric]["mean"] is None:
        return "–"
    value = entry[metric]
    return f"{100 * value['mean']:.2f} ± {100 * value['std']:.2f}"


CONFIG_LABELS = {
    "baseline": "baseline (learned words + chars)",
    **{mode: f"ELMo {mode}" for mode in (*MODES, *EXTRA_MODES)},
    **{f"baseline+{mode}": f"baseline + ELMo {mode}" for mode in (*MODES, *EXTRA_MODES)},
}


def markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    summary = report["summary"]
    pos, ner = summary.get("pos", {}), summary.get("ner", {})
    model = report["model"]
    trained_on = model.get("training_text", {})
    lines = [
        "# Downstream taggers per ELMo mode",
        "",
        f"Model `{model['name']}` ({model['description']}"
        + (f"; trained on {trained_on['corpus']}" if "corpus" in trained_on else "")
        + (f"; Brown: {trained_on['brown_corpus']}" if "brown_corpus" in trained_on else "")
        + f"). Seeds {', '.join(map(str, settings['seeds']))}, {settings['epochs']} epochs, "
        f"mean ± sample std over seeds, in %. Run time {report['run_seconds'] / 60:.1f} min on "
        f"{report['hardware']['cpu']} ({report['hardware']['torch_threads']} torch thread, "
        f"{report['hardware']['cpus']} cores shared with other jobs)"
        + (
            "; the tasks ran side by side, one process each ("
            + ", ".join(f"{'+'.join(p['tasks'])} {p['run_seconds'] / 60:.1f} min" for p in report["parts"])
            + ")."
            if "parts" in report
            else "."
        ),
        "",
        *([f"Note: {model['note']}.", ""] if model.get("note") else []),
        "| configuration | dim | POS accuracy | POS OOV accuracy | NER span F1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for config in settings["configs"]:
        length = (pos.get(config) or ner.get(config) or {}).get("embedding_length", "–")
        lines.append(
            f"| {CONFIG_LABELS[config]} | {length} | {_cell(pos.get(config), 'accuracy')} | "
            f"{_cell(pos.get(config), 'oov_accuracy')} | {_cell(ner.get(config), 'f1')} |"
        )
    lines += ["", "## Data", ""]
    for name, task in report["data"].items():
        lines.append(f"- **{name}**: {task['corpus']}; metric: {task['metric']}.")
        parts = ", ".join(
            f"{part} {task[part]['sentences']} sentences / {task[part]['tokens']} tokens"
            + (f" / {task[part]['entities']} entities" if "entities" in task[part] else "")
            for part in ("train", "dev", "test")
        )
        lines.append(f"  {parts}.")
        if name == "pos":
            lines.append(
                f"  LM split: {task['lm_split']}. Test = whole held-out files {', '.join(task['files']['test'])}; "
                f"dev files {', '.join(task['files']['dev'])}; {task['test_oov_tokens']} OOV test tokens; "
                f"{task['tags_in_train']} tags in train."
            )
        else:
            lines.append(f"  Split: {task['split']}.")
    cache = report.get("cache")
    if cache:
        lines += [
            "",
            "## Layer cache",
            "",
            f"Embedding the {cache['sentences']} POS training sentences ({cache['tokens']} tokens) twice, "
            f"batch {cache['batch_size']}: without cache {cache['no_cache_seconds'][0]:.1f} s + "
            f"{cache['no_cache_seconds'][1]:.1f} s, with cache {cache['cache_seconds'][0]:.1f} s + "
            f"{cache['cache_seconds'][1]:.2f} s: **{cache['speedup_two_passes']:.1f}x** for the two passes, "
            f"{cache['speedup_second_pass']:.0f}x for the second. Filling the cache with all "
            f"{cache['cached_sentences']} distinct sentences of the run took {cache['fill_seconds']:.0f} s; "
            f"after that the cache answered {report['cache_hits']} sentence look-ups and the biLM ran "
            f"{report['cache_misses_after_fill']} times, saving about "
            f"{report['bilm_seconds_saved_estimate'] / 60:.0f} min of biLM time.",
        ]
    mixes = [
        (task, config, entry)
        for task, configs in summary.items()
        for config, entry in configs.items()
        if "mix_weights" in entry
    ]
    if mixes:
        lines += ["", "## Learned mix (mean over seeds; layer 0 = character CNN)", ""]
        for task, config, entry in mixes:
            weights = ", ".join(f"{w:.3f}" for w in entry["mix_weights"])
            lines.append(f"- {task}, {CONFIG_LABELS[config]}: softmax(w) = [{weights}], γ = {entry['mix_gamma']:.3f}")
    lines += [
        "",
        "## Settings",
        "",
        "SequenceTagger: BiLSTM hidden {hidden_size}, CRF for NER only ({crf}), {optimizer} lr {learning_rate}, "
        "batch {mini_batch_size}, Flair's anneal-on-plateau on dev, final-epoch model evaluated. Baseline words: "
        "OneHotEmbeddings.from_corpus(min_freq={word_min_freq}, {word_embedding_length} dims); chars: Flair's "
        "CharacterEmbeddings (25 + 2x25, computed per batch), its dictionary from the training data.".format(
            crf="POS no CRF" if not settings["pos_use_crf"] else "POS CRF", **settings
        ),
        "",
        f"Command: `{report['command']}`; weights.hdf5 sha256 `{model.get('weights_sha256', '?')[:16]}…`.",
        "",
    ]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (t, m, title)
        for t, m, title in (
            ("pos", "accuracy", "POS accuracy"),
            ("pos", "oov_accuracy", "POS accuracy, OOV words"),
            ("ner", "f1", "NER span F1 (WNUT-16)"),
        )
        if t in report["summary"]
    ]
    configs = report["settings"]["configs"]
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    colours = ["#7f7f7f" if c == "baseline" else "#4c72b0" if "+" not in c else "#dd8452" for c in configs]
    for ax, (task, metric, title) in zip(axes[0], panels, strict=True):
        entries = [report["summary"][task].get(c) for c in configs]
        means = [100 * e[metric]["mean"] if e and e[metric]["mean"] is not None else 0.0 for e in entries]
        stds = [100 * e[metric]["std"] if e and e[metric]["std"] is not None else 0.0 for e in entries]
        ax.bar(range(len(configs)), means, yerr=stds, color=colours, capsize=3)
        ax.set_xticks(range(len(configs)), [c.replace("baseline", "base") for c in configs], rotation=60, ha="right")
        low = min(m - s for m, s in zip(means, stds, strict=True))
        high = max(m + s for m, s in zip(means, stds, strict=True))
        margin = max(1.0, 0.15 * (high - low))
        bottom = max(0.0, low - margin)
        ax.set_ylim(bottom, min(100.0, high + margin))
        if "baseline" in configs:
            ax.axhline(means[configs.index("baseline")], color="#7f7f7f", linestyle="--", linewidth=1)
        ax.set_title(title if bottom == 0 else f"{title} (axis from {bottom:.0f}%)")
        ax.set_ylabel("%")
        ax.grid(axis="y", alpha=0.3)
    seeds = len(report["settings"]["seeds"])
    figure.suptitle(f"ELMo {report['model']['name']}: taggers per layer mode (mean ± std over {seeds} seed(s))")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def merge_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report from runs of different tasks with the same settings and model, run side by side.

    Raises:
        ValueError: the runs differ in model weights or settings (other than the tasks), or share a task.
    """
    if len(reports) == 1:
        return reports[0]
    first = reports[0]
    tasks = [t for report in reports for t in report["settings"]["tasks"]]
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"the runs share a task: {tasks}")
    for report in reports[1:]:
        if report["model"].get("weights_sha256") != first["model"].get("weights_sha256"):
            raise ValueError("the runs used different model weights")
        differ = [k for k in first["settings"] if k != "tasks" and report["settings"][k] != first["settings"][k]]
        if differ:
            raise ValueError(f"the runs differ in settings: {differ}")
    merged = dict(first)
    merged["settings"] = {**first["settings"], "tasks": [t for t in TASKS if t in tasks]}
    merged["data"] = {name: info for report in reports for name, info in report["data"].items()}
    merged["runs"] = [run for report in reports for run in report["runs"]]
    merged["summary"] = summarise(merged["runs"])
    merged["cache"] = next((r["cache"] for r in reports if r.get("cache")), None)
    for key in ("cache_hits", "cache_misses_after_fill", "bilm_seconds_saved_estimate"):
        merged[key] = sum(report[key] for report in reports)
    merged["run_seconds"] = max(report["run_seconds"] for report in reports)  # side by side
    merged["parts"] = [
        {"tasks": r["settings"]["tasks"], "run_seconds": r["run_seconds"], "command": r["command"]} for r in reports
    ]
    merged["command"] = " & ".join(report["command"] for report in reports)
    return merged


def write_report(report: dict[str, Any], out: Path, write_json: bool = True) -> dict[str, Path]:
    paths = publish(out, RESULT_NAME, report, markdown(report), echo=False, json_file=write_json)
    paths["png"] = out / f"{RESULT_NAME}.png"
    plot(report, paths["png"])
    return paths
