"""govsoc playbooks."""
