"""What a bug report or a benchmark needs to know about the machine: versions, CPU, math libraries,
threads, GPUs, the LSTM kernel each published configuration takes here by the fixed rule, and the
kernels measured for this machine (its kernel plan).

``flair-elmo info --system`` prints it (the text form is ``cli/info.py``'s); every benchmark JSON
records it. Reads no model weights and imports no Flair (package versions come from their metadata).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from typing import Any

import torch

from flair_elmo_modes.bilm.cpu import cpu_flags, cpu_model, native_bf16
from flair_elmo_modes.bilm.fast import kernel_plan
from flair_elmo_modes.bilm.fast.kernels import kernel_name
from flair_elmo_modes.catalogue import PUBLISHED_MODELS

#: Packages whose versions decide the numbers (ray only where installed).
PACKAGES = ("torch", "numpy", "flair", "h5py", "ray")

#: Environment variables that change which kernels or how many threads the math libraries use.
ENVIRONMENT = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "ATEN_CPU_CAPABILITY",
    "OPENBLAS_CORETYPE",
    "CUDA_VISIBLE_DEVICES",
)

#: Flags shown in the report: the vector ISAs the float32 and bf16 kernels choose between.
SHOWN_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "asimd", "sve", "bf16")

#: Row counts at which the kernel of each published configuration is reported.
REPORTED_BATCHES = (1, 32)


def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`PACKAGES` (None: not installed), and Python's."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["torch"] = torch.__version__  # the imported build (e.g. "+cpu"), not just the wheel's metadata
    return versions


def _config_line(config: str, pattern: str) -> str | None:
    match = re.search(pattern, config, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def math_libraries() -> dict[str, Any]:
    """torch's BLAS and oneDNN, as its build configuration reports them."""
    config = torch.__config__.show()
    return {
        "blas": _config_line(config, r"BLAS_INFO=([^,\n]+)"),
        "mkl": torch.backends.mkl.is_available(),
        "mkl_version": _config_line(config, r"Math Kernel Library Version ([\d.]+)"),
        "onednn": torch.backends.mkldnn.is_available(),
        "onednn_version": _config_line(config, r"MKL-DNN v([\d.]+)"),
        "openmp": _config_line(config, r"(OpenMP \d+)"),
    }


def cuda_devices() -> list[dict[str, Any]]:
    """Every CUDA device torch sees: name, compute capability, memory, bf16 support."""
    if not torch.cuda.is_available():
        return []
    devices = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        devices.append(
            {
                "index": index,
                "name": properties.name,
                "capability": f"{properties.major}.{properties.minor}",
                "memory_gib": round(properties.total_memory / 2**30, 1),
                "bf16": torch.cuda.is_bf16_supported(),
            }
        )
    return devices


def kernel_rule() -> dict[str, dict[str, str]]:
    """The LSTM kernel each published configuration takes here in float32 CPU inference by the
    fixed rule (planning off), at each of :data:`REPORTED_BATCHES` rows (under the ``fast_paths``
    in force)."""
    like = torch.zeros(0)
    rule: dict[str, dict[str, str]] = {}
    for name, model in PUBLISHED_MODELS.items():
        if model.options is not None:
            rule[name] = {
                str(batch): kernel_name(model.options.cell_dim, model.options.projection_dim, batch, like)
                for batch in REPORTED_BATCHES
            }
    return rule


def measured_plan() -> dict[str, Any]:
    """This machine's measured kernel plan (:mod:`~flair_elmo_modes.bilm.fast.kernel_plan`): its file and
    the kernel of each workload measured so far, in this process or any earlier one."""
    entries = kernel_plan.PLAN.entries()
    return {
        "file": str(kernel_plan.plan_file()),
        "entries": [
            {
                "workload": entries[key].get("workload"),
                "kernel": entries[key].get("kernel"),
                "provisional": kernel_plan.provisional(entries[key]),
            }
            for key in sorted(entries)
        ],
    }


def system_info() -> dict[str, Any]:
    """Everything this module knows, as plain data (JSON-serialisable)."""
    flags = cpu_flags()
    return {
        "versions": package_versions(),
        "platform": platform.platform(),
        "cpu": {
            "model": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "flags": None if flags is None else [flag for flag in SHOWN_FLAGS if flag in flags],
            "native_bf16": native_bf16(flags),
            "torch_capability": torch.backends.cpu.get_cpu_capability(),
        },
        "math": math_libraries(),
        "threads": {"torch": torch.get_num_threads(), "interop": torch.get_num_interop_threads()},
        "environment": {name: os.environ[name] for name in ENVIRONMENT if name in os.environ},
        "cuda": cuda_devices(),
        "kernels": kernel_rule(),
        "kernel_plan": measured_plan(),
    }
