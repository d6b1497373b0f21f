"""What a measurement ran on: CPU model, cores, memory, OS, Python and package versions, load.

Plain standard library, so the same description comes out of a Raspberry Pi
without TensorFlow as out of a workstation. Benchmarks, training runs
(versions.json) and conversion reports all describe the machine with it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = ("edge-pcam", "numpy", "ai-edge-litert", "tflite-runtime", "tensorflow", "tf-keras",
            "tensorflow-model-optimization", "pillow", "h5py", "matplotlib")
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm", "sve")


def describe_machine() -> dict[str, Any]:
    """A JSON-ready description of this machine and software stack."""
    cpuinfo = _read("/proc/cpuinfo")
    return {
        "cpu": _cpu_model(cpuinfo),
        "cpu_id": _cpu_id(cpuinfo),
        "board": _read("/proc/device-tree/model").strip("\x00\n ") or None,
        "architecture": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "cpu_flags": [f for f in CPU_FLAGS if f in _flags(cpuinfo)],
        "memory_gb": _memory_gb(),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": package_versions(),
    }


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when absent)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def package_versions_in(python: str | Path, names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """`package_versions` as another Python installation (a second venv) sees them; {} if it cannot run."""
    code = ("import json, sys\nfrom importlib.metadata import PackageNotFoundError, version\nout = {}\n"
            "for name in sys.argv[1:]:\n    try:\n        out[name] = version(name)\n"
            "    except PackageNotFoundError:\n        out[name] = None\nprint(json.dumps(out))")
    try:
        proc = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, timeout=60)
        return json.loads(proc.stdout) if proc.returncode == 0 else {}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (other work on the machine slows every timing), or None."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def summary_line(machine: dict[str, Any]) -> str:
    """One line for a report heading, e.g. 'AMD EPYC 9B45, 2 cores, 23.5 GB, Debian 12, Python 3.11.7'."""
    parts = [machine.get("board") or machine.get("cpu") or machine.get("architecture"),
             f"{machine.get('usable_cores') or machine.get('cores')} cores",
             f"{machine['memory_gb']:.1f} GB" if machine.get("memory_gb") else None,
             machine.get("os"), f"Python {machine.get('python')}"]
    if machine.get("board") and machine.get("cpu"):
        parts.insert(1, machine["cpu"])
    return ", ".join(p for p in parts if p)


def load_line(load_before: list[float] | None, load_after: list[float] | None) -> str:
    """The load averages around a measurement, as `uptime` shows them, in words."""
    def load(avg: list[float] | None) -> str:
        return ", ".join(f"{x:.2f}" for x in avg) if avg else "n/a"
    return (f"load averages (as `uptime` shows them) before {load(load_before)}, after {load(load_after)}: "
            "other work on the machine slows every timing")


def conditions_line(machine: dict[str, Any], load_before: list[float] | None, load_after: list[float] | None) -> str:
    """The machine's summary line and the load around a measurement, for a report heading."""
    return f"{summary_line(machine)}; {load_line(load_before, load_after)}"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _cpu_model(cpuinfo: str) -> str:
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        for line in cpuinfo.splitlines():
            if line.split(":", 1)[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    if "CPU part" in cpuinfo:
        return _arm_part(cpuinfo)
    return platform.processor() or platform.machine()


def _cpu_id(cpuinfo: str) -> str | None:
    """Vendor, family and model numbers (x86), which name the microarchitecture when the model name does not."""
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("vendor_id", "cpu family", "model", "CPU implementer", "CPU part") and key not in fields:
            fields[key] = value.strip()
    if "vendor_id" in fields:
        return f"{fields['vendor_id']} family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"
    if "CPU part" in fields:
        return f"implementer {fields.get('CPU implementer', '?')} part {fields['CPU part']}"
    return None


def _arm_part(cpuinfo: str) -> str:
    """ARM cores name themselves only by part number; the common ones on edge boards."""
    parts = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1",
             "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78", "0xd4f": "Neoverse-V2"}
    for line in cpuinfo.splitlines():
        if line.startswith("CPU part"):
            code = line.split(":", 1)[1].strip().lower()
            return f"ARM {parts.get(code, 'CPU part ' + code)}"
    return platform.machine()


def _flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.split(":", 1)[0].strip() in ("flags", "Features"):
            return set(line.split(":", 1)[1].split())
    return set()


def _usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def _memory_gb() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 ** 2
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    except (ValueError, OSError, AttributeError):
        return None


def _os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return f"{platform.system()} {platform.release()}"

