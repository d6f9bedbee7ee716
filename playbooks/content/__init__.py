"""Ansible content shipped with govsoc: playbooks and their modules."""
