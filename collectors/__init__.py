"""govsoc collectors."""
