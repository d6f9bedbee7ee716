"""Configuration: `govsoc.toml` overlaid by `GOVSOC_*` environment variables.

A key `a.b_c` in the file (table `[a]`, key `b_c`) is overridden by `GOVSOC_A_B_C`.
Top-level keys map the same way: `store_url` <- `GOVSOC_STORE_URL`.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULTS: dict[str, Any] = {
    "store_url": "sqlite:///./data/govsoc.db",
    "retention_days": 180,  # legal minimum for network logs (网络安全法 art. 21)
    "timezone": "Asia/Shanghai",
    "language": "zh-CN",
}


class ConfigError(ValueError):
    """A configuration the user wrote is unusable."""


@dataclass
class Config:
    values: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """Dotted lookup: `cfg.get("crypto.keystore")`; env overrides win."""
        env = "GOVSOC_" + key.replace(".", "_").upper()
        if env in os.environ:
            return _coerce(os.environ[env], _lookup(self.values, key, default))
        return _lookup(self.values, key, default)

    @property
    def store_url(self) -> str:
        return str(self.get("store_url"))

    @property
    def data_dir(self) -> Path:
        """Directory for local state (keystore, spool, checkpoints): beside a SQLite store,
        else `./data`; `GOVSOC_DATA_DIR` overrides."""
        explicit = self.get("data_dir")
        if explicit:
            return Path(explicit)
        url = self.store_url
        if url.startswith("sqlite:///"):
            return sqlite_path(url).parent
        return Path("data")


def _lookup(values: dict[str, Any], key: str, default: Any) -> Any:
    node: Any = values
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _coerce(raw: str, like: Any) -> Any:
    """Environment values are strings; give them the type of the value they replace."""
    if isinstance(like, list):  # GOVSOC_LOGS_PATHS=/var/log/auth.log,/var/log/syslog
        return [part for part in raw.split(",") if part.strip()]
    if isinstance(like, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(like, int):
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"expected an integer, got {raw!r}") from exc
    if isinstance(like, float):
        return float(raw)
    return raw


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact_url(text: str) -> str:
    """Any `scheme://user:password@host` in `text` with the credentials masked, for
    messages, logs and `store info`: secrets never reach them."""
    return _USERINFO.sub("***@", text)


def sqlite_path(url: str) -> Path:
    """`sqlite:///rel/path.db` -> rel/path.db; `sqlite:////abs/path.db` -> /abs/path.db."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"not a sqlite URL: {url}")
    rest = url[len("sqlite:///"):]
    return Path(rest) if rest else Path("govsoc.db")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the config file named by `path`, `GOVSOC_CONFIG`, or ./govsoc.toml if present."""
    candidate = path or os.environ.get("GOVSOC_CONFIG")
    file = Path(candidate) if candidate else Path("govsoc.toml")
    values: dict[str, Any] = {}
    if file.exists():
        try:
            values = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: {exc}") from exc
    elif candidate:
        raise ConfigError(f"config file not found: {file}")
    merged = {**DEFAULTS, **values}
    return Config(values=merged, source=file if file.exists() else None)


def viewer_zone(cfg: Config | None = None) -> ZoneInfo:
    """The zone times are shown in (config `timezone`, default Asia/Shanghai): storage is
    UTC, people read local time. ConfigError names a zone that does not exist."""
    return _zone(str((cfg or load_config()).get("timezone", DEFAULTS["timezone"])))


@functools.cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"timezone {name!r} is not a known time zone "
                          "(e.g. Asia/Shanghai, UTC)") from exc
