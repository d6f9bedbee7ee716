"""govsoc crypto_svc."""
