"""govsoc cloud_inventory."""
