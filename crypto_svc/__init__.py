"""govsoc crypto_svc: SM2/SM3/SM4 (国密), the keystore and the crypto service.

Entry points for other packages (import from here; the modules are internals):
    CryptoService   keystore-backed sign/verify/encrypt/decrypt/seal; every key use is an
                    audit record in the durable trail (`soc_core.audit`) before it returns
    platform_signer, platform_verifier, platform_key, find_platform_key
                    the platform key (label govsoc.role=audit-checkpoint) that signs the
                    audit trail's checkpoints and evidence manifests
    Keystore        keys by id, versions, purpose, state, sealed under the master secret;
                    master_secret_from_env reads that secret as configured
    SM2PrivateKey, SM2PublicKey, sm3_digest, hmac_sm3, sm4_seal/sm4_open (SM4-GCM by default)
    errors: CryptoError and its kinds DecryptionError, InvalidSignature, KeyNotFound,
            KeyStateError, KeystoreError
Submodules for other packages: `api` (the HTTP router `make_router`, `Limits`,
`one_line_validation_error`, mounted by soc_api) and `platform` (LABEL and ROLE of the
platform key). The CLI group is `crypto_svc.cli:crypto`.
"""

import importlib

from crypto_svc.errors import (
    CryptoError,
    DecryptionError,
    KeyNotFound,
    KeyStateError,
    KeystoreError,
)
from crypto_svc.keystore import Keystore, master_secret_from_env
from crypto_svc.platform import (
    find_platform_key,
    platform_key,
    platform_signer,
    platform_verifier,
)
from crypto_svc.service import CryptoService
from crypto_svc.sm2 import InvalidSignature, SM2PrivateKey, SM2PublicKey
from crypto_svc.sm3 import hmac_sm3
from crypto_svc.sm3 import sm3 as sm3_digest  # `crypto_svc.sm3` stays the module
from crypto_svc.sm4 import open_sealed as sm4_open
from crypto_svc.sm4 import seal as sm4_seal

__all__ = [
    "CryptoError", "CryptoService", "DecryptionError", "InvalidSignature", "KeyNotFound",
    "KeyStateError", "Keystore", "KeystoreError", "SM2PrivateKey", "SM2PublicKey", "hmac_sm3",
    "api", "find_platform_key", "master_secret_from_env", "platform", "platform_key",
    "platform_signer", "platform_verifier", "sm3_digest", "sm4_open", "sm4_seal",
]


def __getattr__(name: str):  # noqa: ANN202 - `api` loads FastAPI: only when asked for
    if name in ("api", "platform"):
        return importlib.import_module(f"crypto_svc.{name}")
    raise AttributeError(f"module 'crypto_svc' has no attribute {name!r}")
