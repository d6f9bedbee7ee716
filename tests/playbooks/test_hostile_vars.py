"""Playbook variables from a user are data, never templates: each is checked against its
playbook's schema before the run, and what reaches Ansible is tagged `!unsafe`.

These need no fleet: the refused runs stop before any connection, and the `!unsafe` check
uses Ansible's own loader and templar on the controller."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from playbooks.catalog import PlaybookError
from playbooks.variables import SCHEMAS, unsafe_yaml, validate_vars

GOVSOC = str(Path(sys.executable).parent / "govsoc")


@pytest.fixture
def unreachable(tmp_path) -> Path:
    inv = tmp_path / "inv.yml"  # nothing listens on port 1: the only target is unreachable
    inv.write_text(yaml.safe_dump({"all": {"hosts": {"ghost": {
        "ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "nobody"}}}}))
    return inv


LOOKUP = "{{ lookup('pipe','touch MARKER') }}"


@pytest.mark.parametrize("playbook, var", [("block_ip", f"ip={LOOKUP}1.2.3.4"),
                                           ("disable_account", f"user={LOOKUP}")])
def test_a_template_in_a_cli_variable_never_runs_on_the_controller(tmp_path, unreachable,
                                                                    playbook, var):
    marker = tmp_path / "pwned"
    out = subprocess.run(
        [GOVSOC, "playbook", "run", playbook, "--inventory", str(unreachable),
         "--store", f"sqlite:///{tmp_path}/pb.db", "-e", var.replace("MARKER", str(marker))],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "GOVSOC_DATA_DIR": str(tmp_path / "data")})
    assert not marker.exists()
    assert out.returncode == 2, out.stdout + out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: ")
    assert ("ip" if playbook == "block_ip" else "user") in out.stderr


@pytest.mark.parametrize("name, variables, message", [
    ("block_ip", {"ip": "1.2.3.4,300.1.1.1"}, "not an IPv4 address"),
    ("block_ip", {"ip": ""}, "not an IPv4 address"),
    ("block_ip", {"ip": "1.2.3.4", "undo": "maybe"}, "true or false"),
    ("block_ip", {"ansible_connection": "local"}, "takes no variable 'ansible_connection'"),
    ("disable_account", {"user": "bob; rm -rf /"}, "user name"),
    ("kill_process", {"pid": "12 34"}, "whole number"),
    ("kill_process", {"sha256": "xyz"}, "SHA-256"),
    ("dr_drill", {"dr_pidfile": "/run/x; reboot"}, "absolute path"),
    ("dr_drill", {"dr_vip": "not-an-address"}, "not an IP address"),
    ("patch", {"patch_health_cmd": "true\nreboot"}, "one line"),
    ("patch", {"patch_packages": ["ok", "$(id)"]}, "name of letters"),
    ("asset_sweep", {"x": "1"}, "it takes: none"),
    ("deploy_agent", {"agent_store_url": 'http://x:9200"\nstore_url = "evil'}, "one line"),
    ("deploy_agent", {"agent_store_url": 'http://x:9200" data_dir="/'}, "store URL"),
    ("deploy_agent", {"agent_store_url": "file:///etc/passwd"}, "store URL"),
    ("deploy_agent", {"agent_es_namespace": "Prod-1"}, "lowercase letters"),
    ("deploy_agent", {"agent_auth_paths": ["/var/log/auth.log", "x\" y"]}, "absolute path"),
    ("undeploy_agent", {"agent_store_url": "http://x:9200"}, "it takes: none"),
    ("nope", {}, "unknown playbook"),
])
def test_validate_vars_refuses_what_the_schema_does_not_allow(name, variables, message):
    with pytest.raises(PlaybookError, match=message.replace("(", r"\(").replace("$", r"\$")):
        validate_vars(name, variables)


def test_validate_vars_returns_what_the_playbook_gets():
    assert validate_vars("block_ip", {"ip": " 10.0.0.1 ,10.0.0.2", "undo": "yes"}) == \
        {"ip": "10.0.0.1,10.0.0.2", "undo": True}
    assert validate_vars("kill_process", {"pid": "42", "quarantine": "false"}) == \
        {"pid": 42, "quarantine": False}
    assert validate_vars("patch", {"patch_serial": "50%", "patch_packages": ["a", "b"]}) == \
        {"patch_serial": "50%", "patch_packages": ["a", "b"]}
    assert validate_vars("asset_sweep", None) == {}
    assert set(SCHEMAS) >= {"block_ip", "disable_account", "kill_process", "dr_drill"}


def test_what_reaches_ansible_is_never_rendered(tmp_path):
    """The vars file the driver writes: Ansible's loader reads every string as unsafe, so
    its templar returns the text and the lookup does not run; the same value without the
    tag would run it (the hole this closes)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    marker = tmp_path / "pwned"
    payload = LOOKUP.replace("MARKER", str(marker))
    tagged = tmp_path / "tagged.yml"
    tagged.write_text(unsafe_yaml({"patch_health_cmd": payload, "patch_packages": [payload]}))
    loader = DataLoader()
    values = loader.load_from_file(str(tagged), trusted_as_template=True)  # as `-e @file`
    templar = Templar(loader=loader, variables=values)
    assert templar.template(trust_as_template("{{ patch_health_cmd }}")) == payload
    assert templar.template(trust_as_template("{{ patch_packages }}")) == [payload]
    assert not marker.exists()
    plain = tmp_path / "plain.yml"
    plain.write_text(yaml.safe_dump({"patch_health_cmd": payload}))
    values = loader.load_from_file(str(plain), trusted_as_template=True)
    Templar(loader=loader, variables=values).template(trust_as_template("{{ patch_health_cmd }}"))
    assert marker.exists()
