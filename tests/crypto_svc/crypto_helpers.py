"""Constants and CLI helpers shared by the crypto tests (a uniquely named module: test
folders are not packages, so every test-side module name must be unique across the suite)."""

import os
import subprocess
import sys
from pathlib import Path

MASTER = b"correct horse battery staple 2026"
FAST_KDF = 1000  # PBKDF2 iterations for test keystores (the default is 200,000)

GOVSOC = str(Path(sys.executable).with_name("govsoc"))


def run(*args: str, stdin: bytes | None = None, env: dict | None = None):
    return subprocess.run([GOVSOC, "crypto", *args], capture_output=True, input=stdin,
                          timeout=120, env={**os.environ, **(env or {})}, check=False)


def ok(*args: str, **kw) -> str:
    out = run(*args, **kw)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def one_error_line(out: subprocess.CompletedProcess, code: int = 2) -> str:
    assert out.returncode == code, (out.returncode, out.stderr)
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def detail(resp, status: int) -> str:
    """The HTTP error's `detail`: one line of text, with the expected status."""
    assert resp.status_code == status, resp.text
    text = resp.json()["detail"]
    assert isinstance(text, str) and "\n" not in text
    return text
