"""Install size of edge-pcam's base (device) dependencies on Linux x86-64 and aarch64 (Raspberry Pi OS 64-bit).

    .venv/bin/python benchmarks/install_size.py          # downloads the wheels from PyPI (~80 MB per platform)

For each platform, pip installs the base dependencies of pyproject.toml (markers evaluated for that
platform, Python 3.11) into an empty folder with `pip install --target --platform ... --only-binary=:all:
--no-compile`; the installed size of each distribution is the sum of the files in its RECORD, the
download size the sum of its wheels. The slide readers (openslide-bin, openslide-python, imagecodecs) are
reported apart, and so is the TF-free stack of the Makefile's .venv-tflite (tflite-runtime, numpy<2).
No .pyc files: Python writes them on first import (add about a fifth of the pure-Python part).
Results: benchmarks/results/install_size.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PYTHON = "3.11"
GLIBC = 36  # Debian 12 / Raspberry Pi OS bookworm: wheels for glibc 2.17 to 2.36 install there
PLATFORMS = {machine: [f"manylinux_2_{v}_{machine}" for v in range(GLIBC, 16, -1)] + [f"manylinux2014_{machine}"]
             for machine in ("x86_64", "aarch64")}
PLATFORMS["x86_64"] += ["manylinux_2_5_x86_64", "manylinux1_x86_64"]
SLIDE_READERS = ("openslide-bin", "openslide-python", "imagecodecs")
# The Makefile's .venv-tflite stack (tflite-runtime 2.14 with numpy<2), without the test tools.
TFLITE_STACK = ["numpy<2", "pillow", "h5py", "tifffile", "typer", "rich", *SLIDE_READERS, "tflite-runtime==2.14.*"]


def base_requirements(machine: str) -> list[str]:
    """pyproject's base dependencies whose markers hold on Linux `machine` with Python 3.11."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = {"sys_platform": "linux", "platform_machine": machine, "python_version": PYTHON,
           "python_full_version": f"{PYTHON}.0", "platform_system": "Linux", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    chosen = []
    for line in project["dependencies"]:
        req = Requirement(line)
        if req.marker is None or Marker(str(req.marker)).evaluate(env):
            req.marker = None
            chosen.append(str(req))
    return chosen


def install(requirements: list[str], machine: str, work: Path) -> dict[str, dict[str, int]]:
    """{distribution: {"installed": bytes, "wheel": bytes}} of `requirements` and their dependencies."""
    target, wheels = work / "target", work / "wheels"
    platform_args = [arg for tag in PLATFORMS[machine] for arg in ("--platform", tag)]
    common = ["--disable-pip-version-check", "-q", "--only-binary=:all:", "--python-version", PYTHON,
              "--implementation", "cp", *platform_args]
    subprocess.run([sys.executable, "-m", "pip", "download", *common, "-d", str(wheels), *requirements], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", *common, "--no-compile", "--no-warn-conflicts", "--target", str(target),
                    "--no-index", "--find-links", str(wheels), *requirements], check=True)
    sizes: dict[str, dict[str, int]] = {}
    for record in target.glob("*.dist-info/RECORD"):
        name = canonicalize_name(record.parent.name.split("-")[0])
        total = 0
        for row in csv.reader(record.read_text().splitlines()):
            file = target / row[0]
            if row and file.is_file():
                total += file.stat().st_size
        sizes[name] = {"installed": total, "wheel": 0}
    for wheel in wheels.glob("*.whl"):
        name = canonicalize_name(wheel.name.split("-")[0])
        if name in sizes:
            sizes[name]["wheel"] += wheel.stat().st_size
    return dict(sorted(sizes.items()))


def totals(sizes: dict[str, dict[str, int]], names: set[str] | None = None) -> dict[str, int]:
    chosen = [v for k, v in sizes.items() if names is None or k in names]
    return {"installed": sum(v["installed"] for v in chosen), "wheel": sum(v["wheel"] for v in chosen)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    readers = {canonicalize_name(n) for n in SLIDE_READERS}
    result: dict = {"python": PYTHON, "command": "python benchmarks/install_size.py",
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "platforms": {}}
    for machine in PLATFORMS:
        stacks = {"base": base_requirements(machine)}
        if machine == "aarch64":
            stacks["tflite-runtime stack"] = TFLITE_STACK
        result["platforms"][machine] = {}
        for stack, requirements in stacks.items():
            with tempfile.TemporaryDirectory(prefix="edge-pcam-size-") as tmp:
                sizes = install(requirements, machine, Path(tmp))
            result["platforms"][machine][stack] = {
                "requirements": requirements, "distributions": sizes, "total": totals(sizes),
                "slide_readers": totals(sizes, readers),
                "without_slide_readers": totals(sizes, set(sizes) - readers)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "install_size.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "install_size.md").write_text(markdown(result))
    print(markdown(result))


def mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def markdown(result: dict) -> str:
    lines = ["# Install size of the device side", "",
             f"Linux, CPython {result['python']}, wheels from PyPI; installed = files in each distribution's RECORD "
             "(no .pyc), download = the wheels. MB = 10^6 bytes.", "",
             "| platform | stack | without slide readers (MB installed / download) | openslide-bin + "
             "openslide-python | imagecodecs | total |",
             "|---|---|---:|---:|---:|---:|"]
    for machine, stacks in result["platforms"].items():
        for stack, r in stacks.items():
            d = r["distributions"]
            osl = {k: sum(d.get(n, {}).get(k, 0) for n in ("openslide-bin", "openslide-python"))
                   for k in ("installed", "wheel")}
            ic = d.get("imagecodecs", {"installed": 0, "wheel": 0})
            lines.append(f"| {machine} | {stack} | {mb(r['without_slide_readers']['installed'])} / "
                         f"{mb(r['without_slide_readers']['wheel'])} | {mb(osl['installed'])} / {mb(osl['wheel'])} | "
                         f"{mb(ic['installed'])} / {mb(ic['wheel'])} | {mb(r['total']['installed'])} / "
                         f"{mb(r['total']['wheel'])} |")
    lines += ["", "Largest distributions (installed MB):", ""]
    for machine, stacks in result["platforms"].items():
        for stack, r in stacks.items():
            top = sorted(r["distributions"].items(), key=lambda kv: -kv[1]["installed"])[:8]
            lines.append(f"- {machine}, {stack}: " + ", ".join(f"{k} {mb(v['installed'])}" for k, v in top))
    lines += ["", f"Regenerate: `{result['command']}` ({result['created']}).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
