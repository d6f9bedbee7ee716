"""`govsoc inventory list|show|diff|discover|exposure|idle` (entry point in pyproject.toml)."""

from __future__ import annotations

import click


@click.group("inventory")
def inventory() -> None:
    """The asset registry: assets, their changes, discovery, exposure, idle systems."""
