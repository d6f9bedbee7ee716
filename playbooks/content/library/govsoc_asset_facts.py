#!/usr/bin/python3
"""Ansible module: everything an asset record needs from one Linux host, in one round trip.

One module instead of a dozen shell tasks keeps a sweep of hundreds of hosts close to the
cost of plain fact gathering: each task is an SSH round trip per host.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: govsoc_asset_facts
short_description: Collect a host's asset inventory (identity, OS, packages, sockets, users, sshd)
description:
  - Reads /etc, /proc, dpkg and sshd -T; changes nothing on the host.
options: {}
author: govsoc
"""

EXAMPLES = r"""
- name: Collect the asset record
  govsoc_asset_facts:
"""

RETURN = r"""
ansible_facts:
  description: C(govsoc_result) holds the asset record.
  returned: always
  type: dict
"""

import glob  # noqa: E402
import grp  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import pwd  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

_TCP_STATES_LISTEN = "0A"


def _read(path: str, default: str = "") -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return default


def _run(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout if out.returncode == 0 else ""


def os_release() -> dict:
    info = {}
    for line in _read("/etc/os-release").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            info[k] = v.strip().strip('"')
    return {"name": info.get("NAME", ""), "version": info.get("VERSION_ID", ""),
            "full": info.get("PRETTY_NAME", ""), "family": info.get("ID_LIKE", info.get("ID", "")),
            "platform": info.get("ID", ""), "kernel": platform.release(), "type": "linux"}


def interfaces() -> tuple[list[str], list[str], list[dict]]:
    ips: list[str] = []
    macs: list[str] = []
    nics: list[dict] = []
    out = _run(["ip", "-o", "addr", "show"])
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("inet", "inet6"):
            addr = parts[3].split("/")[0]
            if parts[1] != "lo" and not addr.startswith("fe80"):
                ips.append(addr)
    for dev in sorted(os.listdir("/sys/class/net")):
        mac = _read(f"/sys/class/net/{dev}/address").strip()
        if dev == "lo" or not mac or mac == "00:00:00:00:00:00":
            continue
        macs.append(mac)
        nics.append({"name": dev, "mac": mac})
    return ips, macs, nics


def packages() -> list[dict]:
    out = _run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n"])
    pkgs = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[2].startswith("ii"):
            pkgs.append({"name": parts[0], "version": parts[1]})
    return pkgs


def _socket_owners() -> dict[str, dict]:
    """socket inode -> owning process, from /proc/<pid>/fd links."""
    owners: dict[str, dict] = {}
    for fd in glob.glob("/proc/[0-9]*/fd/*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            pid = fd.split("/")[2]
            inode = target[8:-1]
            if inode not in owners:
                name = _read(f"/proc/{pid}/comm").strip()
                owners[inode] = {"pid": int(pid), "name": name}
    return owners


def _hex_addr(text: str) -> tuple[str, int]:
    addr, port = text.split(":")
    raw = bytes.fromhex(addr)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # /proc stores IPv6 as four little-endian 32-bit words
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        ip = socket.inet_ntop(socket.AF_INET6, words)
    return ip, int(port, 16)


def listening() -> list[dict]:
    owners = _socket_owners()
    found = []
    for proto, path in (("tcp", "/proc/net/tcp"), ("tcp", "/proc/net/tcp6"),
                        ("udp", "/proc/net/udp"), ("udp", "/proc/net/udp6")):
        for line in _read(path).splitlines()[1:]:
            f = line.split()
            if len(f) < 10:
                continue
            if proto == "tcp" and f[3] != _TCP_STATES_LISTEN:
                continue
            if proto == "udp" and f[2].split(":")[1] != "0000":
                continue  # a connected UDP socket is not a listener
            ip, port = _hex_addr(f[1])
            owner = owners.get(f[9], {})
            found.append({"protocol": proto, "address": ip, "port": port,
                          "process": owner.get("name", ""), "pid": owner.get("pid")})
    found.sort(key=lambda s: (s["protocol"], s["port"], s["address"]))
    return found


def services() -> list[dict]:
    out = _run(["systemctl", "list-units", "--type=service", "--state=running",
                "--no-legend", "--plain"])
    if out:
        return [{"name": line.split()[0], "manager": "systemd"} for line in out.splitlines()
                if line.strip()]
    # No systemd (containers, namespace hosts): daemons are the children of PID 1.
    result = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        raw = _read(stat)
        if not raw:
            continue
        name = raw[raw.find("(") + 1:raw.rfind(")")]
        ppid = raw.rsplit(")", 1)[1].split()[1]
        if ppid == "1":
            result.append({"name": name, "manager": "init", "pid": int(stat.split("/")[2])})
    return sorted(result, key=lambda s: s["name"])


def users() -> tuple[list[dict], list[str]]:
    accounts = []
    shadow = {}
    for line in _read("/etc/shadow").splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            shadow[parts[0]] = parts[1]
    for p in pwd.getpwall():
        interactive = not p.pw_shell.endswith(("nologin", "false", "sync"))
        if p.pw_uid != 0 and p.pw_uid < 1000 and not interactive:
            continue
        pw = shadow.get(p.pw_name, "")
        accounts.append({"name": p.pw_name, "id": str(p.pw_uid), "shell": p.pw_shell,
                         "home": p.pw_dir,
                         "locked": pw.startswith("!") or pw.startswith("*"),
                         "interactive": interactive})
    sudoers: set[str] = set()
    for group in ("sudo", "wheel", "admin"):
        try:
            sudoers.update(grp.getgrnam(group).gr_mem)
        except KeyError:
            pass
    for path in ["/etc/sudoers", *sorted(glob.glob("/etc/sudoers.d/*"))]:
        for line in _read(path).splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "Defaults", "%", "@")) and "ALL" in line:
                sudoers.add(line.split()[0])
    return accounts, sorted(sudoers)


def sshd() -> dict:
    out = _run(["/usr/sbin/sshd", "-T"])
    conf = {}
    for line in out.splitlines():
        if " " in line:
            k, v = line.split(" ", 1)
            conf[k] = v
    return {"permit_root_login": conf.get("permitrootlogin", ""),
            "password_authentication": conf.get("passwordauthentication", "") == "yes",
            "pubkey_authentication": conf.get("pubkeyauthentication", "") == "yes",
            "ciphers": [c for c in conf.get("ciphers", "").split(",") if c],
            "listen": [v for k, v in (ln.split(" ", 1) for ln in out.splitlines() if " " in ln)
                       if k == "listenaddress"],
            "ok": bool(out)}


def time_sync() -> dict:
    for name in ("chronyd", "ntpd", "systemd-timesyncd", "openntpd"):
        for comm in glob.glob("/proc/[0-9]*/comm"):
            if _read(comm).strip() == name:
                return {"daemon": name, "running": True}
    return {"daemon": "", "running": False}


def _conf_values(text: str, sep: str | None) -> dict:
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(sep, 1) if sep else line.split(None, 1)
        if len(parts) == 2:
            out[parts[0].strip()] = parts[1].strip()
    return out


def auth_policy() -> dict:
    """Password quality, expiry and account lockout as configured (pwquality, login.defs,
    PAM's pam_faillock / pam_tally2): what 等保 8.1.4.1 a) and b) ask for."""
    pwq = _conf_values(_read("/etc/security/pwquality.conf"), "=")
    defs = _conf_values(_read("/etc/login.defs"), None)
    faillock = _conf_values(_read("/etc/security/faillock.conf"), "=")
    deny = faillock.get("deny")
    for path in sorted(glob.glob("/etc/pam.d/common-auth") + glob.glob("/etc/pam.d/system-auth")):
        for line in _read(path).splitlines():
            if ("pam_faillock.so" in line or "pam_tally2.so" in line) and \
                    not line.lstrip().startswith("#"):
                deny = deny or "3"  # pam_faillock's default
                for word in line.split():
                    if word.startswith("deny="):
                        deny = word[5:]

    def num(v):
        try:
            return int(v)
        except (TypeError, ValueError):
            return None

    return {"minlen": num(pwq.get("minlen")), "minclass": num(pwq.get("minclass")),
            "pass_max_days": num(defs.get("PASS_MAX_DAYS")), "faillock_deny": num(deny)}


# Executables whose SM3 digests are the integrity baseline (密评 8.3 f)
BASELINE = ("/usr/sbin/sshd", "/bin/login", "/usr/bin/sudo", "/usr/bin/passwd",
            "/bin/su", "/usr/bin/su")


def integrity_sm3() -> list:
    paths = [p for p in BASELINE if os.path.isfile(p) and not os.path.islink(p)]
    out = _run(["openssl", "dgst", "-sm3", "-r", *paths]) if paths else ""
    digests = []
    for line in out.splitlines():
        digest, _, path = line.partition(" ")
        digests.append({"path": path.lstrip("*"), "sm3": digest})
    return digests


def disks() -> list[dict]:
    result = []
    seen = set()
    for line in _read("/proc/self/mounts").splitlines():
        dev, mnt, fstype = line.split()[:3]
        if fstype in ("proc", "sysfs", "devpts", "cgroup", "cgroup2", "mqueue", "devtmpfs",
                      "securityfs", "debugfs", "tracefs", "pstore", "bpf", "configfs"):
            continue
        if mnt in seen:
            continue
        seen.add(mnt)
        try:
            st = os.statvfs(mnt)
        except OSError:
            continue
        total = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        if total == 0:
            continue
        result.append({"mount": mnt, "fstype": fstype, "total_bytes": total,
                       "free_bytes": free,
                       "used_pct": round(100.0 * (total - free) / total, 1)})
    return result


def last_patch() -> str | None:
    """Time of the newest package install/upgrade: the dpkg log, else its status file."""
    newest = None
    for path in sorted(glob.glob("/var/log/dpkg.log*")):
        if path.endswith(".gz"):
            continue
        for line in _read(path).splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[2] in ("upgrade", "install"):
                stamp = parts[0] + "T" + parts[1]
                newest = stamp if newest is None or stamp > newest else newest
    if newest:
        return newest
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%S",
                             time.localtime(os.stat("/var/lib/dpkg/status").st_mtime))
    except OSError:
        return None


def main() -> None:
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    ips, macs, nics = interfaces()
    accounts, sudoers = users()
    record = {
        "hostname": socket.gethostname(),
        "machine_id": _read("/etc/machine-id").strip(),
        "ips": ips,
        "macs": macs,
        "interfaces": nics,
        "architecture": platform.machine(),
        "os": os_release(),
        "packages": packages(),
        "listening": listening(),
        "services": services(),
        "users": accounts,
        "sudoers": sudoers,
        "sshd": sshd(),
        "time_sync": time_sync(),
        "auth": auth_policy(),
        "integrity_sm3": integrity_sm3(),
        "disks": disks(),
        "last_patch": last_patch(),
        "uptime_s": int(float(_read("/proc/uptime", "0 0").split()[0])),
    }
    module.exit_json(changed=False, ansible_facts={"govsoc_result": record})


if __name__ == "__main__":
    main()
