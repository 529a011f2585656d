"""Fixtures of the integration suites: real third-party systems on this machine."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # one backend per process; see test_keras_backends

SERVER_START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_mlflow_server(folder: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real MLflow tracking server on loopback (sqlite backend in ``folder``): (URI, process).

    The server forks its workers: :func:`stop_group` stops them all.
    """
    if shutil.which("mlflow", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("needs the 'mlflow' extra")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination", str(folder / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # a group: it forks workers
    )  # fmt: skip
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _healthy(uri):
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (folder / "server.log").read_text()[-2000:]
                pytest.fail(f"MLflow server did not start on {uri}:\n{tail}")
            time.sleep(0.25)
        yield uri, server
    finally:
        stop_group(server, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop_group(server, signal.SIGKILL)
        log.close()


def stop_group(server: subprocess.Popen[bytes], number: int) -> None:
    """Signal the server and the workers it forked (its process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, number)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One MLflow server for the session's tests; yields its URI."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow")) as (uri, _):
        yield uri


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
