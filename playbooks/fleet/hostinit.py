"""PID 1 of one fleet host. Runs under the machine's /usr/bin/python3 (stdlib only), started
by the harness as `ip netns exec NS unshare --mount --uts --pid --fork ... hostinit.py SPEC`.

It builds the host's own root: a tmpfs holds the overlay's upper and work dirs (a tmpfs,
not a directory on /, because overlayfs refuses an upper dir that lies inside its lower
layer), the overlay puts those writes over the machine's `/`, fresh proc/sys/run/tmp are
mounted on top, then pivot_root makes it the host's `/`. sshd is started on the host's
bridge address only, and this process reaps orphans until it is told to stop; when PID 1
of a PID namespace exits the kernel kills everything else in it, which is what makes
`fleet down` complete even when a test left processes behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


def write(root: str, path: str, text: str, mode: int = 0o644) -> None:
    full = root + path
    os.makedirs(os.path.dirname(full), exist_ok=True)
    if os.path.islink(full) or os.path.exists(full):
        os.unlink(full)  # replace, never write through a symlink into the lower layer
    fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(full, mode)


def build_root(spec: dict) -> str:
    stage = spec["stage"]
    os.makedirs(stage, exist_ok=True)
    sh("mount", "-t", "tmpfs", "-o", f"size={spec.get('tmpfs_size', '2g')},mode=755",
       "fleet-upper", stage)
    for d in ("upper", "work", "root"):
        os.makedirs(f"{stage}/{d}")
    root = f"{stage}/root"
    sh("mount", "-t", "overlay", "overlay", "-o",
       f"lowerdir=/,upperdir={stage}/upper,workdir={stage}/work", root)
    # Kernel filesystems are not part of the overlay (they are separate mounts); give the
    # host its own: proc of its PID namespace, sysfs of its network namespace.
    sh("mount", "-t", "proc", "proc", f"{root}/proc")
    sh("mount", "-t", "sysfs", "sysfs", f"{root}/sys")
    sh("mount", "--rbind", "/dev", f"{root}/dev")
    sh("mount", "-t", "tmpfs", "-o", "mode=755", "run", f"{root}/run")
    sh("mount", "-t", "tmpfs", "-o", "mode=1777", "tmp", f"{root}/tmp")
    return root


def personalize(root: str, spec: dict) -> None:
    name = spec["hostname"]
    write(root, "/etc/hostname", name + "\n")
    write(root, "/etc/machine-id", spec["machine_id"] + "\n", 0o444)
    write(root, "/etc/hosts",
          f"127.0.0.1\tlocalhost\n{spec['address']}\t{name}\n::1\tlocalhost ip6-localhost\n")
    for fname, text in spec["host_keys"].items():
        mode = 0o644 if fname.endswith(".pub") else 0o600
        write(root, f"/etc/ssh/{fname}", text, mode)
    # Remove the machine's own host keys from this host's view: each host has its own.
    for fname in os.listdir(f"{root}/etc/ssh"):
        if fname.startswith("ssh_host_") and fname not in spec["host_keys"]:
            os.unlink(f"{root}/etc/ssh/{fname}")
    write(root, "/etc/ssh/sshd_config", spec["sshd_config"])
    os.makedirs(f"{root}/root/.ssh", mode=0o700, exist_ok=True)
    write(root, "/root/.ssh/authorized_keys", spec["authorized_key"] + "\n", 0o600)
    os.makedirs(f"{root}/run/sshd", mode=0o755, exist_ok=True)
    os.makedirs(f"{root}/var/log", exist_ok=True)


def pivot(root: str) -> None:
    os.makedirs(f"{root}/.oldroot", exist_ok=True)
    os.chdir(root)
    sh("pivot_root", ".", ".oldroot")
    os.chroot(".")
    os.chdir("/")
    sh("umount", "-l", "/.oldroot")
    os.rmdir("/.oldroot")


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as fh:  # a file, not argv: it holds host keys
        spec = json.load(fh)
    os.unlink(sys.argv[1])
    socket.sethostname(spec["hostname"])
    root = build_root(spec)
    personalize(root, spec)
    pivot(root)
    os.environ.update({"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                       "HOME": "/root"})
    log = open("/var/log/sshd.log", "ab", buffering=0)  # noqa: SIM115
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e"], stdout=log, stderr=log)

    # Exiting tears down the whole PID namespace; raising from the handler is what
    # interrupts the blocking waitpid (PEP 475 would otherwise retry it).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    print("ready", flush=True)
    # Reap every child: orphans are re-parented to PID 1.
    while True:
        try:
            pid, _ = os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.5)
            continue
        except InterruptedError:
            continue
        if pid == sshd.pid:  # keep the host reachable if sshd dies
            sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e"], stdout=log, stderr=log)


if __name__ == "__main__":
    main()
