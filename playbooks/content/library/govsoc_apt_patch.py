#!/usr/bin/python3
"""Ansible module: apply security updates with apt, reporting versions before and after.

When `repo` is given (the approved internal mirror of a government cloud), apt sees only
that repository: its own sources file and lists directory, so an unreachable public
mirror never turns a patch run into a failure and nothing unapproved is installed.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: govsoc_apt_patch
short_description: Apply (security) updates with apt and report before/after versions
options:
  repo:
    description: An apt source line of the approved repository; when set, apt uses only it.
    type: str
  security_only:
    description: Only upgrades whose candidate comes from a suite named *security*.
    type: bool
    default: true
  packages:
    description: Limit the upgrade to these package names.
    type: list
    elements: str
    default: []
author: govsoc
"""

EXAMPLES = r"""
- name: Security updates from the internal mirror
  govsoc_apt_patch:
    repo: "deb [trusted=yes] http://mirror.gov.example/debian ./"
"""

RETURN = r"""
upgrades:
  description: name, before, after, source of each package upgraded (or to upgrade in check mode).
  type: list
  returned: always
"""

import os  # noqa: E402
import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

LIST_FILE = "/etc/apt/sources.list.d/govsoc-patch.list"
LISTS_DIR = "/var/lib/govsoc/apt-lists"
_INST = re.compile(r"^Inst (\S+) \[(\S+)\] \((\S+) (\S+)")


def apt_opts(repo: str | None) -> list[str]:
    if not repo:
        return []
    return ["-o", f"Dir::Etc::sourcelist={LIST_FILE}", "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={LISTS_DIR}", "-o", "APT::Get::List-Cleanup=0"]


def installed_versions(module: AnsibleModule, names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    _, out, _ = module.run_command(["dpkg-query", "-W", "-f", "${Package}\t${Version}\n", *names])
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def main() -> None:
    module = AnsibleModule(
        argument_spec={"repo": {"type": "str"},
                       "security_only": {"type": "bool", "default": True},
                       "packages": {"type": "list", "elements": "str", "default": []}},
        supports_check_mode=True)
    p = module.params
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    module.run_command_environ_update = env
    if p["repo"]:
        os.makedirs(f"{LISTS_DIR}/partial", exist_ok=True)
        with open(LIST_FILE + ".tmp", "w") as fh:
            fh.write(p["repo"].strip() + "\n")
        os.replace(LIST_FILE + ".tmp", LIST_FILE)
    opts = apt_opts(p["repo"])
    rc, _, err = module.run_command(["apt-get", "update", "-q", *opts])
    if rc != 0:
        module.fail_json(msg=f"apt-get update failed: {err.strip()[-500:]}")
    rc, out, err = module.run_command(["apt-get", "-s", "-q", "upgrade", *opts])
    if rc != 0:
        module.fail_json(msg=f"apt-get -s upgrade failed: {err.strip()[-500:]}")
    wanted = set(p["packages"])
    plan = []
    for line in out.splitlines():
        m = _INST.match(line)
        if not m:
            continue
        name, before, candidate, source = m.groups()
        if p["security_only"] and "security" not in source:
            continue
        if wanted and name not in wanted:
            continue
        plan.append({"name": name, "before": before, "after": candidate, "source": source})
    if plan and not module.check_mode:
        names = [u["name"] for u in plan]
        rc, _, err = module.run_command(
            ["apt-get", "install", "-y", "-q", "--only-upgrade", "-o",
             "Dpkg::Options::=--force-confold", *opts, *names])
        if rc != 0:
            module.fail_json(msg=f"apt-get install failed: {err.strip()[-500:]}", upgrades=plan)
        now = installed_versions(module, names)
        for u in plan:
            u["after"] = now.get(u["name"], u["after"])
    module.exit_json(changed=bool(plan), upgrades=plan,
                     reboot_required=os.path.exists("/var/run/reboot-required"))


if __name__ == "__main__":
    main()
