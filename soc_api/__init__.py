"""govsoc soc_api."""
