"""Constants shared by the crypto tests (a uniquely named module: test folders are not
packages, so every test-side module name must be unique across the suite)."""

MASTER = b"correct horse battery staple 2026"
FAST_KDF = 1000  # PBKDF2 iterations for test keystores (the default is 200,000)
