"""Ansible modules of the govsoc content (run on the managed hosts)."""
