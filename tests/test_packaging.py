"""The suite exercises govsoc as installed, and the installed govsoc carries every file its
packages need (rule packs, playbook content, templates, static files).

`make test` installs govsoc from its wheel into a venv of its own and sets
GOVSOC_TEST_INSTALL=wheel: these tests then prove the packages come from that install (not
from the source tree) and that every resource file of the tree reached it. With the
editable install of development they check the same files against the tree it points to.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import json
import os
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("soc_core", "collectors", "detections", "crypto_svc", "playbooks",
            "cloud_inventory", "soc_api")


def _files(python: bool = True) -> list[Path]:
    """Every file in the packages' folders of the source tree (relative to it): modules too,
    unless `python` is false."""
    out = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*"):
            # a compiled extension (`detections._native`) is built, not package data: the
            # editable install leaves it in the tree, the wheel has its own build
            if (path.is_file() and "__pycache__" not in path.parts
                    and path.suffix not in (".pyc", ".so")
                    and (python or path.suffix != ".py")):
                out.append(path.relative_to(ROOT))
    return sorted(out)


def _install() -> tuple[bool, Path]:
    """(editable?, the folder that holds the imported packages)."""
    dist = importlib.metadata.distribution("govsoc")
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    editable = bool(direct.get("dir_info", {}).get("editable"))
    return editable, Path(str(dist.locate_file(""))).resolve()


def test_resource_files_match_the_package_data_patterns():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["*"]
    resources = _files(python=False)
    assert any(p.parts[:2] == ("detections", "rules") for p in resources)
    missed = [str(p) for p in resources
              if not any(fnmatch.fnmatch(p.name, pat) for pat in patterns)]
    assert not missed, f"not in [tool.setuptools.package-data]: {missed}"
    # a folder with a dot in its name is no (namespace) package: its files are never found
    dotted = [str(p) for p in resources if any("." in part for part in p.parts[:-1])]
    assert not dotted, f"folders with a '.' in their name are not packaged: {dotted}"


def test_packages_are_imported_from_the_install():
    editable, site = _install()
    if os.environ.get("GOVSOC_TEST_INSTALL") == "wheel":
        assert not editable, "make test must run against the wheel, not the editable install"
    dist_files = {str(f) for f in importlib.metadata.distribution("govsoc").files or ()}
    for pkg in PACKAGES:
        where = Path(importlib.import_module(pkg).__file__).resolve()
        if editable:
            assert where.is_relative_to(ROOT / pkg), (pkg, where)
        else:
            assert not where.is_relative_to(ROOT / pkg), f"{pkg} imported from the source tree"
            assert where.is_relative_to(site) and "site-packages" in where.parts, where
            assert str(where.relative_to(site)) in dist_files, where


def test_every_file_of_the_packages_is_installed():
    editable, site = _install()
    base = ROOT if editable else site
    missing = [str(p) for p in _files() if not (base / p).is_file()]
    assert not missing, f"not installed with govsoc: {missing}"
