"""The layout the design promises, read from the source with `ast`: each package exports its
documented interface in `__all__`, dependencies point one way, and no code reaches into
another package's private names or internal modules."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("soc_core", "collectors", "detections", "crypto_svc", "playbooks",
            "cloud_inventory", "soc_api")
# what each package may import (DESIGN.md: dependencies point one way)
ALLOWED = {
    "soc_core": set(),
    "collectors": {"soc_core"}, "detections": {"soc_core"}, "crypto_svc": {"soc_core"},
    "playbooks": {"soc_core"},
    # reports are signed by the platform key, and the keystore is 密评 evidence
    "cloud_inventory": {"soc_core", "playbooks", "crypto_svc"},
    "soc_api": set(PACKAGES) - {"soc_api"},
}
# (file, module, name) imports of private names waiting for their file's owner to switch
# to the public name; the test fails once one is gone, so the list only shrinks
PENDING: set[tuple[str, str, str]] = set()


def _imports(path: Path):
    """(module, name or None, line) for every absolute import in `path`."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                yield node.module, alias.name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno


def _sources(folders) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py")
                  if "__pycache__" not in p.parts)


def _cross(folders):
    """Imports of one top-level package from a file outside it."""
    for path in _sources(folders):
        owner = path.relative_to(ROOT).parts[0]
        for module, name, line in _imports(path):
            top = module.split(".")[0]
            if top in PACKAGES and top != owner:
                yield path.relative_to(ROOT).as_posix(), owner, module, name, line


def _all_of(module_file: Path) -> list[str] | None:
    """The literal `__all__` of a module or package `__init__`, read without importing."""
    for node in ast.parse(module_file.read_text(encoding="utf-8")).body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            value = ast.literal_eval(node.value) if not isinstance(node.value, ast.Call) \
                else None
            if value is None:  # __all__ = sorted([...]) or sorted(_WHERE): import it
                return None
            return list(value)
    return None


def _exported(module: str) -> list[str] | None:
    path = ROOT / Path(*module.split("."))
    file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found = _all_of(file)
    if found is None and "__all__" in file.read_text(encoding="utf-8"):
        found = list(importlib.import_module(module).__all__)
    return found


def test_no_private_names_cross_a_package_boundary():
    seen, bad = set(), []
    for file, _owner, module, name, line in _cross(PACKAGES + ("bench", "scripts")):
        parts = module.split(".") + ([name] if name else [])
        if any(p.startswith("_") and not p.startswith("__") for p in parts):
            if (file, module, name) in PENDING:
                seen.add((file, module, name))
                continue
            bad.append(f"{file}:{line}: {module}.{name}")
    assert not bad, f"private names imported from another package: {bad}"
    assert seen == PENDING, f"no longer imported, remove from PENDING: {PENDING - seen}"


def test_dependencies_point_one_way():
    bad = [f"{file}:{line}: {owner} imports {module}"
           for file, owner, module, _name, line in _cross(PACKAGES)
           if module.split(".")[0] not in ALLOWED[owner]]
    assert not bad, bad


def test_packages_use_each_other_only_through_the_exported_interface():
    """`from P.a.b import x` across packages: each step is exported by the package above
    it (`a` in P.__all__, `b` in P.a.__all__ when P.a is a package), and `x` is in the
    module's `__all__` when it has one. So `soc_core.store.base.resolve_millis` is refused
    (soc_core.store exports resolve_millis, not its module `base`)."""
    bad = []
    for file, _owner, module, name, line in _cross(PACKAGES):
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):
            here = ".".join(parts[:depth])
            nxt = parts[depth] if depth < len(parts) else name
            exported = _exported(here)
            if nxt is None or exported is None:
                continue
            if nxt not in exported:
                bad.append(f"{file}:{line}: {here} does not export {nxt!r}")
                break
    assert not bad, bad


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_exports_exactly_its_documented_interface(package):
    mod = importlib.import_module(package)
    assert isinstance(getattr(mod, "__all__", None), list), f"{package} has no __all__"
    doc = mod.__doc__ or ""
    for name in mod.__all__:
        # a name, loaded lazily or not, or a submodule
        assert (getattr(mod, name, None) is not None
                or importlib.import_module(f"{package}.{name}")), name
        assert name in doc, f"{package}.__all__ names {name!r}, its docstring does not"
