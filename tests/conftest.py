"""Fixtures shared by all tests.

MQTT: tests talk to a real Mosquitto started here on a free loopback port, never to a
system service. The helpers these fixtures use (``Broker``, ``Collector``, ``collect``,
payload factories) are in ``tests/mqtt_helpers.py``; import them from there.

- ``mosquitto``: a broker per test. The test may ``stop()``, ``start()`` (same port,
  same persistence file) or ``kill()`` it.
- ``mosquitto_session``: one broker for the whole session, for tests that only publish
  and subscribe. Do not stop it, and use your own topics.
- ``mosquitto_binary``: the executable, to build a ``Broker`` with other settings
  (e.g. ``allow_anonymous=False``); the test then starts and kills it itself.

Mark tests that use them ``@pytest.mark.broker``. Without Mosquitto, these tests skip,
or fail when ``CI=true`` (CI must not silently skip them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mqtt_helpers import Broker, BrokerStartError, find_mosquitto, free_port


def _find_binary() -> str:
    binary = find_mosquitto()
    if binary is None:
        msg = "mosquitto not found (apt-get install mosquitto); MQTT tests need a real broker"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return binary


def _started_broker(workdir: Path) -> Broker:
    binary = _find_binary()
    last_error = ""
    # free_port() is free only until someone else binds it: try another port if we lost the race.
    for _ in range(3):
        broker = Broker(binary, workdir, free_port())
        try:
            broker.start()
        except BrokerStartError as exc:
            last_error = str(exc)
            if "Address already in use" in last_error:
                continue
            break
        return broker
    pytest.fail(f"could not start mosquitto: {last_error}")


@pytest.fixture
def mosquitto_binary() -> str:
    """Path of the mosquitto executable, for tests that build a ``Broker`` with their own settings."""
    return _find_binary()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto broker for this test only (127.0.0.1, anonymous, persistence on)."""
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    broker = _started_broker(workdir)
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture(scope="session")
def mosquitto_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One Mosquitto broker shared by the session; do not stop or restart it."""
    broker = _started_broker(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield broker
    finally:
        broker.kill()


# <repo>/tests/conftest.py -> <repo>/../shared/data
_DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-data folder: $SPIKEWIRE_DATA, else <repo>/../shared/data.

    Missing data fails the run on CI (CI=true), where it must be present, and skips
    the test elsewhere.
    """
    path = Path(os.environ.get("SPIKEWIRE_DATA", _DEFAULT_DATA_DIR))
    if not path.is_dir():
        msg = f"real data folder {path} not found (set SPIKEWIRE_DATA to the shared data folder)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path
