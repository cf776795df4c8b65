"""Fixtures shared by every test folder. Each test cleans up after itself, even on failure."""

import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

VENV_BIN = os.path.dirname(sys.executable)


def venv_tool(name):
    """Path of one of corral's entry points in the test virtualenv."""
    path = os.path.join(VENV_BIN, name)
    if not os.path.exists(path):
        pytest.skip(f"{name} is not installed in the virtualenv")
    return path


@pytest.fixture
def tmpdir_root():
    """A fresh directory under /tmp (not pytest's tmp_path: overlay and bind mounts want a
    short path on the real root filesystem)."""
    d = tempfile.mkdtemp(prefix="corral-test-")
    yield d
    subprocess.run(["sh", "-c", f"grep -o ' {d}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l"],
                   capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def cid():
    """A unique container ID."""
    return "t" + uuid.uuid4().hex[:12]
