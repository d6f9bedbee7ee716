#!/usr/bin/python3
"""Ansible module: kill a malicious process by pid, or by name and executable hash, and
optionally quarantine its executable; state=absent restores quarantined executables.

Matching by name alone would kill legitimate namesakes; the SHA-256 of /proc/<pid>/exe
pins the exact binary."""

from __future__ import annotations

DOCUMENTATION = r"""
module: govsoc_kill
short_description: Kill processes by pid or by name + executable SHA-256, with quarantine
options:
  pid:
    description: Process id to kill.
    type: int
  name:
    description: Process name (comm); needs sha256.
    type: str
  sha256:
    description: SHA-256 of the process executable.
    type: str
  signal:
    description: Signal name.
    type: str
    default: KILL
  quarantine:
    description: Move the executable to /var/lib/govsoc/quarantine (mode 000).
    type: bool
    default: false
  state:
    description: present kills (and quarantines); absent restores quarantined executables of sha256.
    type: str
    default: present
    choices: [present, absent]
author: govsoc
"""

EXAMPLES = r"""
- name: Kill a miner
  govsoc_kill:
    name: xmrig
    sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
"""

RETURN = r"""
killed:
  description: The processes killed (pid, name, exe).
  type: list
  returned: always
"""

import glob  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

QUARANTINE = "/var/lib/govsoc/quarantine"


def sha256_of(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def proc_info(pid: int) -> dict | None:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            name = fh.read().strip()
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    return {"pid": pid, "name": name, "exe": exe.removesuffix(" (deleted)"),
            "sha256": sha256_of(f"/proc/{pid}/exe")}


def matches(module: AnsibleModule) -> list[dict]:
    p = module.params
    found = []
    if p["pid"] is not None:
        info = proc_info(p["pid"])
        if info and (not p["sha256"] or info["sha256"] == p["sha256"]) \
                and (not p["name"] or info["name"] == p["name"]):
            found.append(info)
        return found
    for comm in glob.glob("/proc/[0-9]*/comm"):
        try:
            with open(comm) as fh:
                if fh.read().strip() != p["name"]:
                    continue
        except OSError:
            continue
        info = proc_info(int(comm.split("/")[2]))
        if info and info["sha256"] == p["sha256"] and info["pid"] != os.getpid():
            found.append(info)
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie is dead; only its parent has not reaped it)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def quarantine(info: dict) -> bool:
    os.makedirs(QUARANTINE, mode=0o700, exist_ok=True)
    target = os.path.join(QUARANTINE, info["sha256"])
    if not os.path.exists(info["exe"]):
        return False
    st = os.stat(info["exe"])
    with open(target + ".json", "w") as fh:
        json.dump({"path": info["exe"], "mode": st.st_mode & 0o7777}, fh)
    shutil.move(info["exe"], target)
    os.chmod(target, 0)
    return True


def restore(sha: str) -> dict | None:
    meta_path = os.path.join(QUARANTINE, sha + ".json")
    if not os.path.exists(meta_path):
        return None
    with open(meta_path) as fh:
        meta = json.load(fh)
    shutil.move(os.path.join(QUARANTINE, sha), meta["path"])
    os.chmod(meta["path"], meta["mode"])
    os.unlink(meta_path)
    return meta


def main() -> None:
    module = AnsibleModule(
        argument_spec={"pid": {"type": "int"}, "name": {"type": "str"},
                       "sha256": {"type": "str"},
                       "signal": {"type": "str", "default": "KILL"},
                       "quarantine": {"type": "bool", "default": False},
                       "state": {"type": "str", "default": "present",
                                 "choices": ["present", "absent"]}},
        supports_check_mode=True)
    p = module.params
    if p["sha256"]:
        p["sha256"] = p["sha256"].lower()
        if len(p["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in p["sha256"]):
            module.fail_json(msg="sha256 must be 64 hex digits")
    if p["state"] == "absent":
        if not p["sha256"]:
            module.fail_json(msg="undo needs the sha256 of the quarantined executable")
        there = os.path.exists(os.path.join(QUARANTINE, p["sha256"] + ".json"))
        restored = None
        if there and not module.check_mode:
            restored = restore(p["sha256"])
        module.exit_json(changed=there, restored=restored, killed=[])
    if p["pid"] is None and not (p["name"] and p["sha256"]):
        module.fail_json(msg="give pid, or name together with sha256")
    try:
        signum = getattr(signal, "SIG" + p["signal"].upper().removeprefix("SIG"))
    except AttributeError:
        module.fail_json(msg=f"unknown signal {p['signal']!r}")
    found = matches(module)
    quarantined = []
    if found and not module.check_mode:
        for info in found:
            try:
                os.kill(info["pid"], signum)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while any(running(i["pid"]) for i in found) \
                and time.monotonic() < deadline and signum == signal.SIGKILL:
            time.sleep(0.05)
        if p["quarantine"]:
            for info in {i["exe"]: i for i in found if i["sha256"]}.values():
                if quarantine(info):
                    quarantined.append(info["exe"])
    module.exit_json(changed=bool(found), killed=found, quarantined=quarantined)


if __name__ == "__main__":
    main()
