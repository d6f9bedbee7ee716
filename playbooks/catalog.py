"""The playbooks shipped in `playbooks/content/`, by name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONTENT_DIR = Path(__file__).with_name("content")


class PlaybookError(ValueError):
    """A user error about a playbook run: unknown name, bad inventory, host busy..."""


@dataclass(frozen=True)
class Playbook:
    name: str
    path: Path
    description: str


def playbooks() -> dict[str, Playbook]:
    found = {}
    for path in sorted(CONTENT_DIR.glob("*.yml")):
        description = ""
        for line in path.read_text(encoding="utf-8").splitlines()[:5]:
            if line.startswith("# description:"):
                description = line.split(":", 1)[1].strip()
        found[path.stem] = Playbook(path.stem, path, description)
    return found


def get_playbook(name: str) -> Playbook:
    known = playbooks()
    if name not in known:
        raise PlaybookError(f"unknown playbook {name!r}; known: {', '.join(sorted(known))}")
    return known[name]
