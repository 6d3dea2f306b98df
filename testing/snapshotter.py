"""Run ``pydock snapshotter serve`` from tests, and call it as containerd's proxy client does.

For pydock's own tests and for a driver author's: start the service on a storage root and
socket of the test's own, talk to it with the generated gRPC stub, stop it with SIGTERM or
kill it with SIGKILL (a failpoint kills it at a chosen step), and start it again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from pydock.testing.cli import PYDOCK

START_TIMEOUT = 30.0


class Served:
    """One ``pydock --root ROOT snapshotter serve --address SOCKET --storage DRIVER``."""

    def __init__(self, root: Path, address: Path, driver: str) -> None:
        self.root = root
        self.address = address
        self.driver = driver
        self.process: subprocess.Popen[bytes] | None = None
        self._channel: Any = None

    def start(self, env: dict[str, str] | None = None) -> Served:
        """Start the service and wait until its socket answers."""
        import grpc

        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [PYDOCK, "--root", str(self.root), "snapshotter", "serve", "--address",
             str(self.address), "--storage", self.driver],
            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})})
        deadline = time.monotonic() + START_TIMEOUT
        while not self.address.is_socket():
            if self.process.poll() is not None:
                _out, err = self.process.communicate()
                self.process = None
                raise AssertionError(f"the service exited before serving: {err.decode()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"no socket at {self.address} after {START_TIMEOUT} s")
            time.sleep(0.02)
        self._channel = grpc.insecure_channel(f"unix:{self.address}")
        grpc.channel_ready_future(self._channel).result(timeout=START_TIMEOUT)
        return self

    def stub(self) -> Any:
        from pydock.core.snapshotter.api.snapshots_pb2_grpc import SnapshotsStub

        assert self._channel is not None, "not started"
        return SnapshotsStub(self._channel)  # type: ignore[no-untyped-call]

    def stop(self) -> tuple[int, str]:
        """SIGTERM, as systemd stops it; its exit status and stderr."""
        return self._end(signal.SIGTERM)

    def kill(self) -> tuple[int, str]:
        """SIGKILL: no cleanup of any kind, as after an OOM kill."""
        return self._end(signal.SIGKILL)

    def wait(self, timeout: float = START_TIMEOUT) -> tuple[int, str]:
        """The end of a service that is to end by itself (at a failpoint)."""
        assert self.process is not None, "not started"
        _out, err = self.process.communicate(timeout=timeout)
        return self._ended(self.process.returncode, err)

    def _end(self, number: int) -> tuple[int, str]:
        assert self.process is not None, "not started"
        if self.process.poll() is None:
            self.process.send_signal(number)
        try:
            _out, err = self.process.communicate(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _out, err = self.process.communicate()
            self._ended(self.process.returncode, err)
            raise AssertionError(f"the service ignored signal {number}") from None
        return self._ended(self.process.returncode, err)

    def _ended(self, code: int, err: bytes) -> tuple[int, str]:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self.process = None
        return code, err.decode()
