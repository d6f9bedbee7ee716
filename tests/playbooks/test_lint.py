"""The shipped Ansible content is ansible-lint clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from playbooks.catalog import CONTENT_DIR


def test_content_is_ansible_lint_clean():
    lint = Path(sys.executable).with_name("ansible-lint")
    out = subprocess.run([str(lint), "--offline", "--nocolor", "-q", "--profile", "production",
                          "."], cwd=CONTENT_DIR,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
