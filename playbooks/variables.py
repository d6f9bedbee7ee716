"""What each shipped playbook accepts as variables, checked before a run.

A value from a user (the CLI's `-e`, the API's request body) is data, never a template:
`validate_vars` checks it against its playbook's schema (an address is an address, a user
name a user name, a path a plain absolute path) and `unsafe_yaml` writes it for Ansible
tagged `!unsafe`, so `{{ lookup('pipe', ...) }}` in a value is text that is never rendered
on the controller. A variable a playbook does not declare is refused: a typo must not be
silently ignored, and `-e ansible_...` must not reach the connection settings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

import yaml

from playbooks.catalog import PlaybookError, get_playbook

__all__ = ["SCHEMAS", "command_vars", "has_undo", "validate_vars", "unsafe_yaml"]

MAX_VALUE = 4096  # characters in one value: anything longer is not a name or an address


def _text(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PlaybookError(f"{what} must be text, got {type(value).__name__}")
    value = str(value)
    if len(value) > MAX_VALUE:
        raise PlaybookError(f"{what} is longer than {MAX_VALUE} characters")
    if "\x00" in value or "\n" in value or "\r" in value:
        raise PlaybookError(f"{what} must be one line without NUL")
    return value


def _pattern(regex: str, meaning: str) -> Callable[[Any, str], str]:
    compiled = re.compile(regex)

    def check(value: Any, what: str) -> str:
        text = _text(value, what)
        if not compiled.fullmatch(text):
            raise PlaybookError(f"{what} must be {meaning}, got {text[:80]!r}")
        return text

    return check


def _ipv4_list(value: Any, what: str) -> str:
    """One or more IPv4 addresses, comma-separated (or a list): normalised to `a,b`."""
    items = value if isinstance(value, list) else _text(value, what).split(",")
    out = []
    for item in items:
        text = _text(item, what).strip()
        try:
            out.append(str(ipaddress.IPv4Address(text)))
        except ValueError:
            raise PlaybookError(f"{what}: {text[:80]!r} is not an IPv4 address") from None
    if not out:
        raise PlaybookError(f"{what} needs at least one IPv4 address")
    return ",".join(out)


def _address(value: Any, what: str) -> str:
    text = _text(value, what).strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise PlaybookError(f"{what}: {text[:80]!r} is not an IP address") from None


def _boolean(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise PlaybookError(f"{what} must be true or false, got {str(value)[:80]!r}")


def _integer(low: int, high: int) -> Callable[[Any, str], int]:
    def check(value: Any, what: str) -> int:
        if isinstance(value, bool):
            raise PlaybookError(f"{what} must be a whole number")
        try:
            n = int(str(value).strip())
        except ValueError:
            raise PlaybookError(f"{what} must be a whole number, got {str(value)[:80]!r}") \
                from None
        if not low <= n <= high:
            raise PlaybookError(f"{what} must be between {low} and {high}, got {n}")
        return n

    return check


def _list_of(item: Callable[[Any, str], Any]) -> Callable[[Any, str], list[Any]]:
    def check(value: Any, what: str) -> list[Any]:
        items = value if isinstance(value, list) else _text(value, what).split(",")
        return [item(v.strip() if isinstance(v, str) else v, what) for v in items]

    return check


def _percent_or_count(value: Any, what: str) -> str | int:
    text = _text(value, what).strip()
    if re.fullmatch(r"(100|[1-9]?[0-9])%", text):
        return text
    return _integer(1, 100_000)(text, what)


_USER = _pattern(r"[a-z_][a-z0-9_.-]{0,31}", "a user name (lowercase, at most 32 characters)")
_HOST = _pattern(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}", "an inventory host name")
_PATH = _pattern(r"/[A-Za-z0-9._/+-]{0,1023}", "an absolute path of letters, digits and ._/+-")
_URL_PATH = _pattern(r"/[A-Za-z0-9._~/%-]{0,1023}", "a URL path")
_NAME = _pattern(r"[A-Za-z0-9_.+-]{1,128}", "a name of letters, digits and ._+-")
_SHA256 = _pattern(r"[0-9a-fA-F]{64}", "a SHA-256 in hex (64 digits)")
_SIGNAL = _pattern(r"(SIG)?[A-Z0-9]{2,8}", "a signal name such as KILL or TERM")
# a shell command or an apt source line is what the variable is for (it runs on the target,
# not on the controller); it is still one line and never a template
_COMMAND = _text
_PID = _integer(1, 4_194_304)
# store URLs as the store takes them (several nodes comma-separated); no quote or
# backslash: the value is written into the agent's TOML config
_STORE_URL = _pattern(r"https?://[^\s\"'\\,]+(,https?://[^\s\"'\\,]+)*",
                      "an http(s) store URL (several nodes comma-separated)")
_ES_NAMESPACE = _pattern(r"[a-z0-9_]{1,64}", "lowercase letters, digits and _")

# playbook -> variable -> check (returns the value as the playbook receives it)
SCHEMAS: dict[str, dict[str, Callable[[Any, str], Any]]] = {
    "asset_sweep": {},
    "block_ip": {"ip": _ipv4_list, "undo": _boolean},
    "disable_account": {"user": _USER, "undo": _boolean, "state_dir": _PATH},
    "isolate_host": {"mgmt": _ipv4_list, "undo": _boolean},
    "kill_process": {"pid": _PID, "name": _NAME, "sha256": _SHA256, "kill_signal": _SIGNAL,
                     "quarantine": _boolean, "undo": _boolean},
    "patch": {"patch_repo": _COMMAND, "patch_packages": _list_of(_NAME),
              "patch_health_cmd": _COMMAND, "patch_allow_reboot": _boolean,
              "patch_security_only": _boolean, "patch_min_free_mb": _integer(0, 10**9),
              "patch_serial": _percent_or_count, "patch_max_fail_percentage": _integer(0, 100)},
    "retire_host": {"retire_services": _list_of(_NAME), "retire_approved_by": _NAME,
                    "retire_asset_id": _pattern(r"[0-9a-f]{32}", "an asset id"),
                    "undo": _boolean},
    "dr_drill": {"dr_primary": _HOST, "dr_standby": _HOST, "dr_vip": _address,
                 "dr_data_dir": _PATH, "dr_backup_dir": _PATH, "dr_port": _integer(1, 65535),
                 "dr_health_path": _URL_PATH, "dr_pidfile": _PATH, "dr_service_cmd": _COMMAND,
                 "dr_sm4_key_file": _PATH, "dr_encrypt": _boolean},
    "deploy_agent": {"agent_store_url": _STORE_URL, "agent_es_namespace": _ES_NAMESPACE,
                     "agent_source": _PATH, "agent_wheel": _PATH, "agent_wheelhouse": _PATH,
                     "agent_host_interval": _integer(1, 3600),
                     "agent_health_interval": _integer(1, 3600),
                     "agent_restart_delay": _integer(1, 300),
                     "agent_auth_paths": _list_of(_PATH), "agent_syslog_paths": _list_of(_PATH)},
    "undeploy_agent": {},
}


# playbook -> the variable that names who approved the run: set from the request's
# approver when it runs (never from what the requester wrote)
APPROVER_VARS = {"retire_host": "retire_approved_by"}


def command_vars(name: str, variables: dict[str, Any] | None) -> list[str]:
    """The variables of a request that are commands for the hosts: they run even in check
    mode (`check_mode: false` tasks), so a check run that sets one is not read-only."""
    schema = SCHEMAS.get(name) or {}
    return sorted(k for k in variables or {} if schema.get(k) is _COMMAND)


def has_undo(name: str) -> bool:
    """Whether the playbook can take back what it did (it declares an `undo` variable)."""
    return "undo" in (SCHEMAS.get(name) or {})


def validate_vars(name: str, variables: dict[str, Any] | None) -> dict[str, Any]:
    """Check a run's variables against playbook `name`'s schema and return them as the
    playbook gets them (booleans and numbers converted). Raises PlaybookError naming the
    first bad variable; the run must not start then."""
    get_playbook(name)  # an unknown playbook is the clearer error
    schema = SCHEMAS.get(name)
    if schema is None:  # a playbook added without a schema takes no variables
        schema = {}
    if variables is None:
        return {}
    if not isinstance(variables, dict):
        raise PlaybookError("playbook variables must be a mapping of name to value")
    out: dict[str, Any] = {}
    for key, value in variables.items():
        if not isinstance(key, str) or key not in schema:
            known = ", ".join(sorted(schema)) or "none"
            raise PlaybookError(f"playbook {name} takes no variable {str(key)[:64]!r}; "
                                f"it takes: {known}")
        out[key] = schema[key](value, key)
    return out


class _Unsafe(str):
    """A string written with Ansible's `!unsafe` tag."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value), style="'"))


def _tag(value: Any) -> Any:
    if isinstance(value, str):
        return _Unsafe(value)
    if isinstance(value, list):
        return [_tag(v) for v in value]
    if isinstance(value, dict):
        return {k: _tag(v) for k, v in value.items()}
    return value


def unsafe_yaml(variables: dict[str, Any]) -> str:
    """Variables as an Ansible vars file where every string is `!unsafe` (never templated)."""
    return yaml.dump(_tag(variables), Dumper=_Dumper, allow_unicode=True,
                     default_flow_style=False)
