#!/usr/bin/python3
"""Ansible module: the SOC's nftables containment on one host, idempotent, check-mode aware.

Two independent tables so each action undoes cleanly without touching the other or any
rule the host owner wrote:
  - `inet govsoc_block`: a set `blocked` of IPv4 addresses dropped in and out;
  - `inet govsoc_isolate`: everything dropped except loopback and the allowed addresses.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: govsoc_nft
short_description: Block addresses or isolate a host with nftables
options:
  block:
    description: IPv4 addresses to add to (present) or remove from (absent) the block set.
    type: list
    elements: str
  isolate:
    description: Isolate the host (state=present) or lift the isolation (state=absent).
    type: bool
    default: false
  allow:
    description: Addresses that may still reach an isolated host (the SOC management address).
    type: list
    elements: str
  state:
    description: present or absent.
    type: str
    default: present
    choices: [present, absent]
author: govsoc
"""

EXAMPLES = r"""
- name: Block an attacker
  govsoc_nft:
    block: [203.0.113.7]
"""

RETURN = r"""
blocked:
  description: The block set after the change.
  type: list
  returned: always
isolated:
  description: Whether the host is isolated after the change.
  type: bool
  returned: always
"""

import ipaddress  # noqa: E402
import json  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

BLOCK_TABLE = "govsoc_block"
ISOLATE_TABLE = "govsoc_isolate"


def ruleset(module: AnsibleModule) -> list[dict]:
    rc, out, err = module.run_command(["nft", "-j", "list", "ruleset"])
    if rc != 0:
        module.fail_json(msg=f"nft list ruleset failed: {err.strip()}")
    return json.loads(out or '{"nftables": []}')["nftables"]


def has_table(rs: list[dict], name: str) -> bool:
    return any(i.get("table", {}).get("name") == name for i in rs)


def blocked_set(rs: list[dict]) -> list[str]:
    for item in rs:
        s = item.get("set")
        if s and s.get("table") == BLOCK_TABLE and s.get("name") == "blocked":
            return sorted(str(e) for e in s.get("elem", []) if isinstance(e, str))
    return []


def apply(module: AnsibleModule, script: str) -> None:
    rc, _, err = module.run_command(["nft", "-f", "-"], data=script)
    if rc != 0:
        module.fail_json(msg=f"nft failed: {err.strip()}")


def block_table_script() -> str:
    return f"""table inet {BLOCK_TABLE} {{
  set blocked {{ type ipv4_addr; }}
  chain input {{ type filter hook input priority -10; policy accept; ip saddr @blocked drop; }}
  chain output {{ type filter hook output priority -10; policy accept; ip daddr @blocked drop; }}
}}
"""


def isolate_script(allow: list[str]) -> str:
    allowed = ", ".join(allow)
    return f"""table inet {ISOLATE_TABLE} {{
  chain input {{ type filter hook input priority -20; policy drop;
    iifname "lo" accept; ip saddr {{ {allowed} }} accept; }}
  chain output {{ type filter hook output priority -20; policy drop;
    oifname "lo" accept; ip daddr {{ {allowed} }} accept; }}
  chain forward {{ type filter hook forward priority -20; policy drop; }}
}}
"""


def valid_ips(module: AnsibleModule, values: list[str], what: str) -> list[str]:
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.IPv4Address(v)))
        except ValueError:
            module.fail_json(msg=f"{what}: {v!r} is not an IPv4 address")
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={"block": {"type": "list", "elements": "str", "default": []},
                       "isolate": {"type": "bool", "default": False},
                       "allow": {"type": "list", "elements": "str", "default": []},
                       "state": {"type": "str", "default": "present",
                                 "choices": ["present", "absent"]}},
        supports_check_mode=True)
    p = module.params
    present = p["state"] == "present"
    block = valid_ips(module, p["block"], "block")
    allow = valid_ips(module, p["allow"], "allow")
    rs = ruleset(module)
    changed = False
    current = blocked_set(rs)
    if block:
        if present:
            missing = [ip for ip in block if ip not in current]
            if missing:
                changed = True
                if not module.check_mode:
                    script = "" if has_table(rs, BLOCK_TABLE) else block_table_script()
                    script += f"add element inet {BLOCK_TABLE} blocked {{ {', '.join(missing)} }}\n"
                    apply(module, script)
                current = sorted(set(current) | set(missing))
        else:
            there = [ip for ip in block if ip in current]
            if there:
                changed = True
                if not module.check_mode:
                    apply(module, f"delete element inet {BLOCK_TABLE} blocked "
                                  f"{{ {', '.join(there)} }}\n")
                current = sorted(set(current) - set(there))
    isolated = has_table(rs, ISOLATE_TABLE)
    if p["isolate"]:
        if present and not isolated:
            if not allow:
                module.fail_json(msg="isolate needs at least one allowed (management) address")
            changed = True
            if not module.check_mode:
                apply(module, isolate_script(allow))
            isolated = True
        elif not present and isolated:
            changed = True
            if not module.check_mode:
                apply(module, f"delete table inet {ISOLATE_TABLE}\n")
            isolated = False
    module.exit_json(changed=changed, blocked=current, isolated=isolated)


if __name__ == "__main__":
    main()
