"""govsoc crypto_svc: SM2/SM3/SM4 (国密), the keystore and the crypto service.

Entry points for other packages (import from here; the modules are internals):
    CryptoService   keystore-backed sign/verify/encrypt/decrypt/seal; every key use is an
                    audit record in the durable trail (`soc_core.audit`) before it returns
    platform_signer, platform_verifier
                    the platform key (label govsoc.role=audit-checkpoint) that signs the
                    audit trail's checkpoints and evidence manifests
    Keystore        keys by id, versions, purpose, state, sealed under the master secret;
                    master_secret_from_env(cfg) reads the secret it is opened with
    SM2PrivateKey, SM2PublicKey, sm3_digest, hmac_sm3, sm4_seal/sm4_open (SM4-GCM by default)
    errors: CryptoError and its kinds DecryptionError, InvalidSignature, KeyNotFound,
            KeyStateError, KeystoreError
Modules others use whole: `api` (make_router, Limits, one_line_validation_error: the HTTP
routes soc_api mounts) and `platform` (LABEL, ROLE, platform_key, find_platform_key: the
platform key itself). The CLI group is `crypto_svc.cli:crypto` (an entry point).
"""

from crypto_svc import platform
from crypto_svc.errors import (
    CryptoError,
    DecryptionError,
    KeyNotFound,
    KeyStateError,
    KeystoreError,
)
from crypto_svc.keystore import Keystore, master_secret_from_env
from crypto_svc.platform import platform_signer, platform_verifier
from crypto_svc.service import CryptoService
from crypto_svc.sm2 import InvalidSignature, SM2PrivateKey, SM2PublicKey
from crypto_svc.sm3 import hmac_sm3
from crypto_svc.sm3 import sm3 as sm3_digest  # `crypto_svc.sm3` stays the module
from crypto_svc.sm4 import open_sealed as sm4_open
from crypto_svc.sm4 import seal as sm4_seal
from soc_core.lazy import lazy_exports

__all__ = [
    "CryptoError", "CryptoService", "DecryptionError", "InvalidSignature", "KeyNotFound",
    "KeyStateError", "Keystore", "KeystoreError", "SM2PrivateKey", "SM2PublicKey", "hmac_sm3",
    "api", "master_secret_from_env", "platform", "platform_signer", "platform_verifier",
    "sm3_digest", "sm4_open", "sm4_seal",
]
__getattr__ = lazy_exports(__name__, {}, modules=["api"])  # FastAPI: loaded when mounted
