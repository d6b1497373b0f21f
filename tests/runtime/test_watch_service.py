"""The systemd unit for `edge-pcam watch`: the installer fills in user, venv, folders and restart
policy; systemd accepts the unit; the command line it runs is one `edge-pcam watch` takes."""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "devices" / "watch-service" / "install.sh"


def install(*args, check=True):
    result = subprocess.run(["bash", str(INSTALL), *map(str, args)], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def env_file(text):
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def exec_start(unit, env):
    """ExecStart as systemd expands it: ${VAR} is one argument, $VAR splits on white space."""
    line = next(l.split("=", 1)[1] for l in unit.splitlines() if l.startswith("ExecStart="))
    words = []
    for word in line.split():
        braced = re.fullmatch(r"\$\{(\w+)\}", word)
        bare = re.fullmatch(r"\$(\w+)", word)
        words += [env[braced.group(1)]] if braced else env[bare.group(1)].split() if bare else [word]
    return words


@pytest.fixture()
def installed(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    os.symlink(shutil.which("edge-pcam", path=str(Path(sys.executable).parent)) or sys.executable,
               venv / "bin" / "edge-pcam")
    root = tmp_path / "root"
    install("--root", root, "--inbox", "/srv/slides in", "--out", "/srv/results", "--user", getpass.getuser(),
            "--venv", venv, "--restart", "always", "--restart-sec", "30", "--settle", "45")
    unit = (root / "etc/systemd/system/edge-pcam-watch.service").read_text()
    env = env_file((root / "etc/edge-pcam/watch.env").read_text())
    return root, venv, unit, env


def test_installer_fills_in_the_settings(installed):
    root, venv, unit, env = installed
    assert not re.search(r"@[A-Z_]+@", unit + "".join(env.values()))  # every placeholder filled in
    assert f"User={getpass.getuser()}" in unit and "Restart=always" in unit and "RestartSec=30" in unit
    assert env["EDGE_PCAM_INBOX"] == "/srv/slides in" and env["EDGE_PCAM_OUT"] == "/srv/results"
    assert (root / "srv/slides in").is_dir() and (root / "srv/results").is_dir()
    assert exec_start(unit, env) == [f"{venv}/bin/edge-pcam", "watch", "/srv/slides in", "--out", "/srv/results",
                                     "--settle", "45"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_unit(installed):
    root, _, unit, _ = installed
    result = subprocess.run(["systemd-analyze", "verify", str(root / "etc/systemd/system/edge-pcam-watch.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_service_command_runs(installed, tmp_path):
    """The unit's command line, with the folders moved under tmp_path and --once added, scans nothing and stops."""
    _, _, unit, env = installed
    env = {**env, "EDGE_PCAM_INBOX": str(tmp_path / "inbox"), "EDGE_PCAM_OUT": str(tmp_path / "out")}
    (tmp_path / "inbox").mkdir()
    command = exec_start(unit, env)
    result = subprocess.run([*command, "--once"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "stopped (inbox handled)" in result.stdout, shlex.join(command)


def test_installer_refuses_bad_settings(tmp_path):
    for args, message in [(["--out", "/x"], "--inbox and --out are required"),
                          (["--inbox", "/a", "--out", "/b", "--restart", "sometimes"], "--restart: on-failure"),
                          (["--inbox", "/a", "--out", "/b", "--restart-sec", "ten"], "whole number of seconds"),
                          (["--inbox", "/a", "--out", "/b", "--user", "no-such-user-here"], "no such user")]:
        result = install("--root", tmp_path, *args, check=False)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
