"""``flair-elmo info``: a model's architecture, files and embedding lengths, without downloading."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from flair_elmo_modes import checksums
from flair_elmo_modes.cli.common import examples
from flair_elmo_modes.model_info import describe_model
from flair_elmo_modes.models import DEFAULT_MODEL, WEIGHTS_NAME


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "info",
        parents=[common],
        help="show a model's architecture, files and embedding lengths",
        description="Show a model's architecture, parameter count, embedding length per layer mode and files. "
        "Never downloads: a published model not yet in flair's cache is described from this package's catalogue.",
        epilog=examples(
            "flair-elmo info",
            "flair-elmo info en-tiny",
            "flair-elmo info original --json",
            "flair-elmo info path/to/model_dir",
            "flair-elmo info path/to/model.zip",
            "flair-elmo info path/to/options.json",
            "flair-elmo info --system",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        metavar="MODEL_OR_OPTIONS",
        nargs="?",
        default=DEFAULT_MODEL,
        help="a shipped or published model name, a model directory (or a .zip of one), or an options.json file "
        f"(default {DEFAULT_MODEL!r}, the model embed uses by default)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--system",
        action="store_true",
        help="describe this machine instead of a model: versions, CPU and its bf16 support, the ISA torch uses, "
        "BLAS and oneDNN, threads, CUDA devices, the LSTM kernel of each published model at batch 1 and 32 "
        "by the fixed rule, and the kernels measured on this machine (its kernel plan): what a bug report needs",
    )
    parser.set_defaults(func=run, writes_files=False)


def _size_text(count: int) -> str:
    if count < 1000:
        return f"{count} B"
    size = float(count)
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            break
    return f"{size:.1f} {unit}"


def format_info(info: dict[str, Any]) -> str:
    """The text form of :func:`describe_model`'s result."""
    kinds = {"shipped": "shipped with flair-elmo-modes", "published": "published by AllenNLP", "local": "local"}
    rows = [("model", f"{info['model']} ({kinds.get(info['kind'], info['kind'])})")]
    for label, key in (("options file", "options_file"), ("weight file", "weight_file")):
        file = info[key]
        if "url" in file:
            cache = Path(file["path"])
            state = (
                f"cached at {cache}" if file["exists"] else f"not cached; downloaded on first use into {cache.parent}"
            )
            rows.append((label, f"{file['url']} ({state})"))
        elif file["path"] is None:
            rows.append((label, f"not found (expected {WEIGHTS_NAME} beside the options file)"))
        else:
            size = _size_text(file["bytes"]) if file["exists"] else "missing"
            rows.append((label, f"{file['path']} ({size})"))
    arch = info.get("architecture")
    if arch is None:
        rows.append(("architecture", "unknown until the options file is downloaded"))
    else:
        filters = " ".join(f"{width}x{count}" for width, count in arch["filters"])
        if arch["source"] == "catalogue":
            rows.append(("architecture", "from this package's catalogue (the options file is not downloaded yet)"))
        rows += [
            (
                "characters",
                f"{arch['n_characters']} ids, {arch['char_embedding_dim']}-dim embeddings, "
                f"{arch['max_characters_per_token']} per token",
            ),
            (
                "filters",
                f"{len(arch['filters'])} convolutions (width x count: {filters}) = {arch['n_filters']} channels, "
                f"{arch['activation']}",
            ),
            ("highway layers", str(arch["n_highway"])),
            *(
                [("words", f"{arch['word_lexicon']} words, {arch['word_dim']}-dim embeddings")]
                if arch.get("word_lexicon")
                else []
            ),
            (
                "LSTM",
                f"{arch['lstm_layers']} layers x 2 directions, {arch['cell_dim']} cells, projection "
                f"{arch['projection_dim']}, cell clip {arch['cell_clip']:g}, proj clip {arch['proj_clip']:g}, "
                f"skip connections {'on' if arch['use_skip_connections'] else 'off'}",
            ),
        ]
    if "output_layers" in info:
        layers = info["output_layers"]
        rows.append(("output", f"{layers} layers (0 = characters, 1..{layers - 1} = LSTM) of {info['layer_dim']}"))
    if "checksums" in info:
        rows.append(("checksums", _checksum_text(info["checksums"])))
    parameters = info.get("parameters")
    rows.append(("parameters", f"{parameters:,}" if parameters is not None else "unknown until downloaded"))
    if "embedding_length" in info:
        rows.append(("embedding length", ", ".join(f"{m}={n}" for m, n in info["embedding_length"].items())))
    return _aligned(rows)


def format_system_info(info: dict[str, Any]) -> str:
    """The text form of :func:`~flair_elmo_modes.system.system_info`'s result."""
    versions = ", ".join(f"{name} {version or 'not installed'}" for name, version in info["versions"].items())
    cpu, math = info["cpu"], info["math"]
    bf16 = {True: "yes", False: "no", None: "unknown"}[cpu["native_bf16"]]
    flags = "unknown" if cpu["flags"] is None else " ".join(cpu["flags"]) or "none of interest"
    rows = [
        ("versions", versions),
        ("platform", info["platform"]),
        ("cpu", f"{cpu['model']}, {cpu['logical_cpus']} logical CPUs"),
        ("cpu flags", flags),
        ("native bf16", bf16),
        ("torch ISA", cpu["torch_capability"]),
        ("blas", f"{math['blas']}" + (f" (MKL {math['mkl_version']})" if math["mkl_version"] else "")),
        ("onednn", f"v{math['onednn_version']}" if math["onednn_version"] else ("yes" if math["onednn"] else "absent")),
        ("threads", f"torch {info['threads']['torch']}, inter-op {info['threads']['interop']}"),
        ("environment", ", ".join(f"{k}={v}" for k, v in info["environment"].items()) or "(none set)"),
        (
            "cuda",
            "; ".join(f"{d['index']}: {d['name']} (sm {d['capability']}, {d['memory_gib']} GiB)" for d in info["cuda"])
            or "no devices",
        ),
    ]
    for name, kernels in info["kernels"].items():
        rows.append((f"kernel rule {name}", ", ".join(f"batch {batch}: {kernel}" for batch, kernel in kernels.items())))
    plan = info["kernel_plan"]
    rows.append(("kernel plan", plan["file"] + ("" if plan["entries"] else " (nothing measured yet)")))
    busy = " (measured on a busy machine: delete the plan file to measure again)"
    for entry in plan["entries"]:
        work = entry["workload"] or {}
        shape = "x".join(str(work.get(dim)) for dim in ("input_dim", "cell_dim", "projection_dim"))
        rows.append(
            (
                "",
                f"{work.get('device')} {work.get('precision')} {shape}, rows >= {work.get('rows')}, "
                f"{work.get('threads')} threads: {entry['kernel']}" + (busy if entry["provisional"] else ""),
            )
        )
    return _aligned(rows)


def _aligned(rows: list[tuple[str, str]]) -> str:
    """``label  value`` lines, the values aligned."""
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def _checksum_text(status: dict[str, list[str]]) -> str:
    parts = []
    if status["mismatch"]:
        changed = ", ".join(status["mismatch"])
        parts.append(f"MISMATCH: {changed} (bytes differ from {checksums.SUMS_NAME}: damaged or changed)")
    if status["verified"]:
        parts.append(f"verified against {checksums.SUMS_NAME}: {', '.join(status['verified'])}")
    if status["unchecked"]:
        parts.append(f"not verified (no {checksums.SUMS_NAME} entry): {', '.join(status['unchecked'])}")
    return "; ".join(parts) or "no files to verify"


def run(args: argparse.Namespace) -> int:
    """``flair-elmo info``."""
    if args.system:
        from flair_elmo_modes.system import system_info

        info = system_info()
        print(json.dumps(info, indent=2) if args.json else format_system_info(info))
        return 0
    info = describe_model(args.model)
    # Options refuse NaN and infinities, so allow_nan=False only guards against a future field.
    print(json.dumps(info, indent=2, allow_nan=False) if args.json else format_info(info))
    return 0
