"""sd_notify: READY=1, WATCHDOG=1 pings, RELOADING=1 on SIGHUP and STOPPING=1, as systemd would see them."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest
from deploy_util import Daemon, demo_pipeline_toml

from runtime.service import Notifier, watchdog_interval_s


class NotifyListener:
    """The service manager's side: a datagram socket collecting states."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(30.0)
        self.states: list[str] = []

    def until(self, state: str, count: int = 1) -> list[str]:
        while self.states.count(state) < count:
            self.states += self.sock.recv(4096).decode().split("\n")
        return self.states

    def close(self) -> None:
        self.sock.close()


def test_notifier_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    listener = NotifyListener(str(path))
    n = Notifier(str(path))
    assert n.notify("READY=1", "STATUS=ok")
    assert listener.until("READY=1") == ["READY=1", "STATUS=ok"]
    n.close()
    listener.close()


def test_notifier_without_socket_does_nothing() -> None:
    assert not Notifier(None).notify("READY=1")
    assert not Notifier("relative/path").enabled


def test_watchdog_interval() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "x"}) is None


@pytest.mark.slow
def test_daemon_notifies_ready_watchdog_reloading_stopping(tmp_path: Path) -> None:
    config = tmp_path / "sw.toml"
    config.write_text("stdout = false\n" + demo_pipeline_toml())
    address = f"@spikewire-test-{os.getpid()}-{tmp_path.name}"
    listener = NotifyListener(address)
    daemon = Daemon(config, env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
    try:
        states = listener.until("READY=1")
        assert not any(s.startswith("WATCHDOG") for s in states[: states.index("READY=1")])
        listener.until("WATCHDOG=1", count=5)  # every 0.1 s from the event loop
        daemon.proc.send_signal(signal.SIGHUP)
        states = listener.until("READY=1", count=2)
        assert "RELOADING=1" in states
        assert any(s.startswith("MONOTONIC_USEC=") for s in states)
        daemon.proc.send_signal(signal.SIGTERM)
        states = listener.until("STOPPING=1")
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        listener.close()
    assert states.index("RELOADING=1") < len(states) - 1 - states[::-1].index("READY=1") < states.index("STOPPING=1")
