"""The README's setup gives a Jupyter front end that opens the chapters.

``requirements.txt`` installs JupyterLab; this test starts ``jupyter lab`` on a free local port,
as a reader would after the setup, and asks its server for chapter 1 (the notebook a reader's
browser then loads) and for the kernel that runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "book-test-token"
START_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def test_jupyter_lab_opens_a_chapter(tmp_path: Path) -> None:
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent))
    assert jupyter is not None, "no `jupyter` next to this Python: pip install -r requirements.txt"
    port = _free_port()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path), "HOME": str(tmp_path)}
    server = subprocess.Popen(
        [
            jupyter, "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={ROOT}",
            "--allow-root",  # CI runs as root
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                status, _ = _get(f"{base}/lab")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    _, error = server.communicate(timeout=10)
                    pytest.fail(f"jupyter lab did not start:\n{error.decode()[-2000:]}")
                time.sleep(0.5)
        assert status == 200
        status, body = _get(f"{base}/api/contents/chapters/01_divergences.ipynb")
        assert status == 200
        notebook = json.loads(body)
        assert notebook["type"] == "notebook" and notebook["content"]["cells"]
        status, body = _get(f"{base}/api/kernelspecs")
        assert "python3" in json.loads(body)["kernelspecs"]
    finally:
        server.terminate()
        server.wait(timeout=30)
