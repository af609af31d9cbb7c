"""The machine a benchmark ran on, in one line for its report.

Sessions get different machines (an AVX2-only AMD EPYC one day, a Xeon with AMX the next), and the engines pick
their kernels by the vector instructions they find, so a figure means little without the CPU beside it. The
line names the CPU as the OS reports it, its cores, and those instruction sets.
"""
import os
import platform
from pathlib import Path

# The instruction sets the engines choose kernels by, as /proc/cpuinfo's flags name them, in the order printed.
FEATURES = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "VNNI", "avx512_bf16": "BF16", "amx_tile": "AMX"}


def describe_cpu(cpuinfo: str | None = None, cores: int | None = None) -> str:
    """E.g. "AMD EPYC (family 26, model 2), 2 cores, AVX2 AVX-512 VNNI BF16, no AMX".

    `cpuinfo`: the text of /proc/cpuinfo (read here when not given); where there is none (not Linux), the line
    names what `platform` knows."""
    cores = cores or os.cpu_count() or 1
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    fields = {}
    for line in cpuinfo.splitlines():
        key, separator, value = line.partition(":")
        if separator:
            fields.setdefault(key.strip(), value.strip())  # the first processor's
    if not fields:
        return f"{platform.processor() or platform.machine() or 'unknown CPU'}, {cores} cores"
    flags = set(fields.get("flags", "").split())
    found = [name for flag, name in FEATURES.items() if flag in flags]
    family = f" (family {fields['cpu family']}, model {fields['model']})" if "cpu family" in fields and "model" in fields else ""
    line = f"{fields.get('model name', 'unknown CPU')}{family}, {cores} cores, {' '.join(found) or 'no AVX2'}"
    if "AVX-512" not in found:
        return line + ", no AVX-512"
    return line + "".join(f", no {name}" for flag, name in FEATURES.items() if flag not in flags)
