"""Fixtures: a private aetherd per test, unique topic names, helper processes.

Nothing here ever auto-starts a daemon: AETHER_NO_AUTOSTART=1 is set for the
whole session (and inherited by every child process).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket as socketlib
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

os.environ["AETHER_NO_AUTOSTART"] = "1"

REPO = Path(__file__).resolve().parents[2]
RUN_TAG = uuid.uuid4().hex[:8]
SHM = Path("/dev/shm")


def _binary(name: str, env: str | None = None) -> str:
    if env and os.environ.get(env):
        return os.environ[env]
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / name
        if p.is_file():
            return str(p)
    found = shutil.which(name)
    if found:
        return found
    pytest.exit(
        f"{name} not found: build it first (cargo build --release -p aetherd -p aether-cli)",
        returncode=2,
    )


@pytest.fixture(scope="session")
def aetherd_bin() -> str:
    return _binary("aetherd", "AETHER_DAEMON")


@pytest.fixture(scope="session")
def cli_bin() -> str:
    return _binary("aether-cli", "AETHER_CLI")


class Broker:
    """A private aetherd on a socket in a temporary directory."""

    def __init__(self, exe: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="aether-pytest-")
        self.socket = os.path.join(self.dir, "s.sock")
        self.log = os.path.join(self.dir, "aetherd.log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [exe, "--socket", self.socket, "--state-dir", os.path.join(self.dir, "state")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.instance = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"aetherd exited at start: {self.read_log()}")
            m = re.search(r"instance ([0-9a-f]+)", self.read_log())
            if m and self._connectable():
                self.instance = m.group(1)
                return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"aetherd did not start: {self.read_log()}")

    def _connectable(self) -> bool:
        s = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_SEQPACKET)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def read_log(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def segments(self) -> list[str]:
        if not self.instance:
            return []
        return sorted(p.name for p in SHM.glob(f"aether.{self.instance}.*"))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


@pytest.fixture
def broker(aetherd_bin):
    b = Broker(aetherd_bin)
    try:
        yield b
    finally:
        rc = b.stop()
        leaked = b.segments()
        assert rc == 0, f"aetherd exited with {rc}: {b.read_log()}"
        assert not leaked, f"aetherd left shared memory behind: {leaked}"


@pytest.fixture
def sock(broker) -> str:
    """The private broker's socket path."""
    return broker.socket


@pytest.fixture
def topic(request) -> str:
    """A topic name unique to this test and this run."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:60]
    return f"py{RUN_TAG}.{name}.{uuid.uuid4().hex[:6]}"


def run_python(code: str, *args: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    """Runs `code` in a child interpreter (same venv), capturing its output."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


@pytest.fixture(scope="session", autouse=True)
def no_leaked_shm():
    """After the whole run, no shared-memory object of this run's topics remains."""
    yield
    leaked = sorted(p.name for p in SHM.glob("aether.*") if f"py{RUN_TAG}." in p.name)
    assert not leaked, f"leaked shared-memory objects: {leaked}"
