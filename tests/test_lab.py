"""`make lab`, the README's first command, opens the lessons: as root (containers and cloud
machines run as root, and JupyterLab refuses root unless told) and as a normal user, and it
listens on 127.0.0.1 only. The test starts it as a user would and asks for the first lesson."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from servers import free_port, listening_addresses, stop, wait_until_served

ROOT = Path(__file__).resolve().parent.parent
LESSON = "01_conv_output_size.ipynb"
# As root, a normal user is played by `nobody` (setpriv keeps the environment we give it).
USERS = ["this user", *(["nobody"] if os.geteuid() == 0 and shutil.which("setpriv") else [])]
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


def _as(user: str, command: list[str]) -> list[str]:
    return AS_NOBODY + command if user == "nobody" else command


@pytest.mark.parametrize("user", USERS)
def test_make_lab_serves_the_first_lesson_on_loopback_only(user, tmp_path):
    if not (ROOT / ".venv" / "bin" / "jupyter").exists():
        pytest.skip("no .venv: `make lab` would install it first (make test does that)")
    runs = subprocess.run(_as(user, ["sh", "-c", f"'{ROOT}/.venv/bin/jupyter' --version && "
                                                 f"test -r '{ROOT}/notebooks/{LESSON}'"]),
                          capture_output=True, check=False)
    if runs.returncode:  # e.g. the venv's base Python lives in root's private home
        pytest.skip(f"{user} cannot run this checkout's .venv or read its lessons")
    home = Path(tempfile.mkdtemp(prefix="rfviz-lab-home-"))  # pytest's tmp_path is private
    if user == "nobody":
        shutil.chown(home, "nobody", "nogroup")
    port, token = free_port(), uuid.uuid4().hex
    env = {**os.environ, "HOME": str(home), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    log = tmp_path / "lab.log"
    with open(log, "w") as output:
        server = subprocess.Popen(
            _as(user, ["make", "--no-print-directory", "lab",
                       f"LAB_ARGS=--no-browser --port={port} --IdentityProvider.token={token}"]),
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            lesson = json.loads(wait_until_served(
                f"{base}/api/contents/{LESSON}?content=0&token={token}", server, log))
            page = wait_until_served(f"{base}/lab/tree/{LESSON}?token={token}", server, log)
            listening = listening_addresses(port)
        finally:
            stop(server)
            shutil.rmtree(home, ignore_errors=True)
    assert lesson["type"] == "notebook" and lesson["name"] == LESSON
    assert b"JupyterLab" in page
    assert listening == {"127.0.0.1"}, f"make lab listens on {listening}, not only 127.0.0.1"


@pytest.mark.parametrize("user", USERS)
def test_make_lab_allows_root_only_for_root(user):
    """The command `make lab` runs, as each user (a dry run: nothing starts)."""
    command = subprocess.run(_as(user, ["make", "--no-print-directory", "-n", "lab"]), cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    root = user == "this user" and os.geteuid() == 0
    assert "jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1" in command
    assert ("--allow-root" in command) == root
