#!/usr/bin/python3
"""Ansible module (runs on the controller): what `deploy_agent` copies to the hosts.

- the govsoc wheel: the one given, or one built from the checkout given (a clean copy of
  the tree, so stale build output never slips into it);
- a wheelhouse with the agent's own dependencies, each pinned to the version the
  controller runs (they are tested together there): the hosts install offline from it.

The agent needs a small part of govsoc's dependencies (AGENT_DISTS): the host and log
collectors, the shipper and the Elasticsearch client; the API, rules, reports and Ansible
stay on the central machines. The wheelhouse is a cache kept between runs: once it holds
every pinned wheel, nothing is downloaded again (an air-gapped controller fills it once
with `pip download`).
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: govsoc_agent_bundle
short_description: Build the govsoc wheel and the agent's wheelhouse on the controller
options:
  source:
    description: A govsoc checkout (with pyproject.toml) to build the wheel from.
    type: str
  wheel:
    description: A govsoc wheel to deploy as is (instead of building one).
    type: str
  wheelhouse:
    description: Directory of dependency wheels (filled when a pinned wheel is missing).
    type: str
    required: true
  python:
    description: The controller's Python with govsoc installed (pins and pip come from it).
    type: str
    required: true
author: govsoc
"""

RETURN = r"""
wheel: {description: path of the govsoc wheel, type: str}
wheelhouse: {description: directory of the dependency wheels, type: str}
bundle: {description: one tar of the govsoc wheel and the wheelhouse (one copy a host), type: str}
requirements: {description: the pinned requirements the hosts install, type: list}
"""

import glob  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

# the distributions `govsoc agent` imports (store client, collectors, CLI)
AGENT_DISTS = ("click", "orjson", "psutil", "elasticsearch", "cryptography", "gmalglib",
               "google-re2", "tzdata")
_SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "data", "*.egg-info",
                               "__pycache__", ".pytest_cache", ".ruff_cache", "node_modules")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_PINS = """
import sys
from importlib.metadata import PackageNotFoundError, version
for dist in sys.argv[1:]:
    try:
        print(f"{dist}=={version(dist)}")
    except PackageNotFoundError:
        print(dist)
"""


def pins(python: str) -> list[str]:
    """The agent's distributions pinned to the versions `python` runs."""
    out = subprocess.run([python, "-c", _PINS, *AGENT_DISTS], check=True,
                         capture_output=True, text=True)
    return out.stdout.split()


def build_wheel(python: str, source: str, out_dir: str) -> str:
    if not os.path.isfile(os.path.join(source, "pyproject.toml")):
        raise ValueError(f"{source} is not a govsoc checkout (no pyproject.toml)")
    with tempfile.TemporaryDirectory(prefix="govsoc-agent-src-") as tmp:
        tree = os.path.join(tmp, "src")
        shutil.copytree(source, tree, ignore=_SKIP, symlinks=True)
        subprocess.run([python, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--disable-pip-version-check", "-w", out_dir, tree],
                       check=True, capture_output=True, text=True)
    found = sorted(glob.glob(os.path.join(out_dir, "govsoc-*.whl")), key=os.path.getmtime)
    if not found:
        raise ValueError("pip built no govsoc wheel")
    return found[-1]


def have(wheelhouse: str, requirement: str) -> bool:
    name, _, ver = requirement.partition("==")
    prefix = _norm(name).replace("-", "_")
    for f in os.listdir(wheelhouse):
        parts = f.split("-")
        if f.endswith(".whl") and len(parts) > 2 and _norm(parts[0]).replace("-", "_") == \
                prefix and (not ver or parts[1] == ver):
            return True
    return False


def main() -> None:
    module = AnsibleModule(argument_spec={
        "source": {"type": "str"}, "wheel": {"type": "str"},
        "wheelhouse": {"type": "str", "required": True},
        "python": {"type": "str", "required": True}}, supports_check_mode=True)
    p = module.params
    house = os.path.abspath(os.path.expanduser(p["wheelhouse"]))
    python = p["python"]
    try:
        requirements = pins(python)
        os.makedirs(house, exist_ok=True)
        if p["wheel"]:
            if not os.path.isfile(p["wheel"]) or not p["wheel"].endswith(".whl"):
                raise ValueError(f"no such wheel: {p['wheel']}")
            wheel = os.path.abspath(p["wheel"])
        elif p["source"]:
            out = os.path.join(house, "govsoc")
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            wheel = build_wheel(python, os.path.abspath(p["source"]), out)
        else:
            raise ValueError("give agent_wheel (a govsoc wheel) or agent_source (a checkout)")
        missing = [r for r in requirements if not have(house, r)]
        if missing:  # their own dependencies come too; one without a wheel is built
            subprocess.run([python, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                            "-w", house, *requirements], check=True, capture_output=True,
                           text=True)
        bundle = os.path.join(house, "govsoc", "agent-bundle.tar")
        os.makedirs(os.path.dirname(bundle), exist_ok=True)
        with tarfile.open(bundle + ".tmp", "w") as tar:  # wheels are compressed already
            tar.add(wheel, arcname=os.path.basename(wheel))
            for f in sorted(os.listdir(house)):
                if f.endswith(".whl"):
                    tar.add(os.path.join(house, f), arcname=f)
        os.replace(bundle + ".tmp", bundle)
    except subprocess.CalledProcessError as exc:
        module.fail_json(msg=f"{' '.join(exc.cmd[:4])}... failed: "
                             f"{(exc.stderr or '').strip()[-800:]}")
    except (OSError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=True, wheel=wheel, wheelhouse=house, bundle=bundle,
                     requirements=requirements)


if __name__ == "__main__":
    main()
