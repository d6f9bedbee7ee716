#!/usr/bin/python3
"""Ansible module: move a service address (VIP) onto or off a host.

After adding the address it announces it with gratuitous ARP, so neighbours that cached
the previous owner's MAC switch at once instead of after their ARP entry goes stale.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: govsoc_vip
short_description: Add or remove a service address, announced by gratuitous ARP
options:
  address:
    description: The IPv4 service address.
    type: str
    required: true
  prefix:
    description: Prefix length.
    type: int
    default: 24
  dev:
    description: Interface.
    type: str
    default: eth0
  state:
    description: present or absent.
    type: str
    default: present
    choices: [present, absent]
author: govsoc
"""

EXAMPLES = r"""
- name: Take over the service address
  govsoc_vip:
    address: 10.213.0.250
"""

RETURN = r"""
address:
  description: The address handled.
  type: str
  returned: always
"""

import ipaddress  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def assigned(module: AnsibleModule, dev: str, address: str) -> bool:
    rc, out, _ = module.run_command(["ip", "-o", "-4", "addr", "show", "dev", dev])
    return rc == 0 and any(f"inet {address}/" in line for line in out.splitlines())


def gratuitous_arp(dev: str, address: str, count: int = 3) -> None:
    with open(f"/sys/class/net/{dev}/address") as fh:
        mac = bytes.fromhex(fh.read().strip().replace(":", ""))
    ip = socket.inet_aton(address)
    # Ethernet broadcast, ARP request "who has VIP, tell VIP" from the new owner's MAC.
    frame = (b"\xff" * 6 + mac + b"\x08\x06"
             + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\x00" * 6 + ip)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((dev, 0))
        for _ in range(count):
            s.send(frame)
            time.sleep(0.05)


def main() -> None:
    module = AnsibleModule(
        argument_spec={"address": {"type": "str", "required": True},
                       "prefix": {"type": "int", "default": 24},
                       "dev": {"type": "str", "default": "eth0"},
                       "state": {"type": "str", "default": "present",
                                 "choices": ["present", "absent"]}},
        supports_check_mode=True)
    p = module.params
    try:
        address = str(ipaddress.IPv4Address(p["address"]))
    except ValueError:
        module.fail_json(msg=f"{p['address']!r} is not an IPv4 address")
    here = assigned(module, p["dev"], address)
    want = p["state"] == "present"
    changed = here != want
    if changed and not module.check_mode:
        verb = "add" if want else "del"
        rc, _, err = module.run_command(
            ["ip", "addr", verb, f"{address}/{p['prefix']}", "dev", p["dev"]])
        if rc != 0:
            module.fail_json(msg=f"ip addr {verb} failed: {err.strip()}")
    if want and not module.check_mode:
        gratuitous_arp(p["dev"], address)
    module.exit_json(changed=changed, address=address)


if __name__ == "__main__":
    main()
