"""The systemd unit passes ``systemd-analyze verify`` without a single warning.

verify checks that ExecStart= names an executable file, and /opt/spikewire is not there
on a test machine: the test copies the unit into tmp_path with ExecStart's program
rewritten to a stand-in script it creates (everything else is verified as shipped).
verify exits 0 even for unknown keys or unparsable values (it only warns), so the test
also requires empty output; a misspelt key in a copy shows that this catches mistakes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from deploy_util import DEPLOY, need_tool

UNIT = DEPLOY / "systemd" / "spikewire.service"


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    tool = need_tool("systemd-analyze", "systemd")
    fake = tmp_path / "spikewire"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    text, n = re.subn(r"^ExecStart=\S+", f"ExecStart={fake}", unit_text, flags=re.MULTILINE)
    assert n == 1, "the unit has exactly one ExecStart="
    unit = tmp_path / "spikewire.service"
    unit.write_text(text)
    return subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False)


def test_unit_verifies_cleanly(tmp_path: Path) -> None:
    out = _verify(UNIT.read_text(), tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "" and out.stderr.strip() == "", out.stdout + out.stderr


def test_verify_catches_a_misspelt_key(tmp_path: Path) -> None:
    out = _verify(UNIT.read_text().replace("DynamicUser=yes", "DynamicUsr=yes"), tmp_path)
    assert "Unknown key 'DynamicUsr'" in out.stderr


def test_unit_has_the_settings_the_daemon_relies_on() -> None:
    text = UNIT.read_text()
    settings = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in text.splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert settings["Type"] == "notify"
    assert int(settings["WatchdogSec"]) > 0
    assert settings["DynamicUser"] == "yes" and settings["ProtectSystem"] == "strict"
    assert "NUMBA_CACHE_DIR=%C/spikewire" in text and settings["CacheDirectory"] == "spikewire"
    assert settings["LoadCredential"].startswith("mqtt-password:")
    # numba's JIT needs writable+executable memory.
    assert not re.search(r"^MemoryDenyWriteExecute=", text, flags=re.MULTILINE)
