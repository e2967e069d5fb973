"""What the CPU is and can do, from ``/proc/cpuinfo`` (Linux; None or a fallback elsewhere).

The core's one reader of CPU facts: the bf16 precision warns when the CPU lacks native bf16
products, the kernel plan is kept per CPU model, and ``flair-elmo info --system`` reports them.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

#: CPU flags (Linux ``/proc/cpuinfo`` names) of native bf16 arithmetic: AVX-512 BF16 (AMD Zen 4+,
#: Intel Cooper Lake+), AMX-BF16 (Intel Sapphire Rapids+), and Arm's BF16 extension.
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@functools.cache  # the CPU does not change under a process
def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``'s ``model name``), else what ``platform`` knows."""
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> frozenset[str] | None:
    """The first CPU's feature flags (``flags`` on x86, ``Features`` on Arm); None where unknown."""
    for line in _cpuinfo():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return None


def native_bf16(flags: frozenset[str] | None) -> bool | None:
    """Whether the CPU computes bf16 products natively (None: flags unknown on this platform)."""
    return None if flags is None else any(flag in flags for flag in BF16_FLAGS)


#: oneDNN's ``ONEDNN_MAX_CPU_ISA`` values below its first ISA with bf16 dot products
#: (``AVX512_CORE_BF16``; see oneDNN's "CPU dispatcher control" documentation).
ISAS_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"})


def bf16_held_back() -> str | None:
    """The setting that keeps oneDNN from the CPU's bf16 instructions, if one does: e.g.
    ``"ONEDNN_MAX_CPU_ISA=AVX2"``."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        if os.environ.get(name, "").strip().upper() in ISAS_WITHOUT_BF16:
            return f"{name}={os.environ[name]}"
    return None
