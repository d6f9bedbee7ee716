"""SM2 (GB/T 32918, GM/T 0003/0009) on the recommended curve sm2p256v1.

Backends, chosen by measurement (bench/crypto.py prints the figures):
- signing and encryption: gmalglib (C), ~2.5x OpenSSL's sign rate here;
- verification: OpenSSL 3 libcrypto through `crypto_svc.ossl` (gmalglib verifies at
  under half of OpenSSL's rate);
- decryption: OpenSSL too, for its constant-time C3 check and key wiping (see ossl);
both fall back to gmalglib when libcrypto is missing.
Everything around the curve arithmetic is ours and curve-generic: Z_A, the digest e, the
encodings (DER/raw signatures; GM/T 0009 DER, C1C3C2 and legacy C1C2C3 ciphertexts;
PKCS#8 / SubjectPublicKeyInfo PEM as OpenSSL writes them) and all input validation.

gmalglib reads every random number it asks for as a *little-endian* integer; we always give
it `os.urandom` (never its built-in source) and, for the standard's fixed-k examples only,
the byte-reversed k (`_k`, a keyword that no service, CLI or HTTP path passes).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from functools import cached_property

from gmalglib.sm2 import SM2 as _GM

from crypto_svc import asn1, ossl
from crypto_svc.curves import SM2P256V1, Curve
from crypto_svc.errors import CryptoError, DecryptionError
from crypto_svc.sm3 import sm3, sm3_parts

DEFAULT_ID = b"1234567812345678"  # GM/T 0009 §10
OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_SM2 = "1.2.156.10197.1.301"
SIG_FORMATS = ("der", "raw")
CT_FORMATS = ("der", "c1c3c2", "c1c2c3")
MAX_ID_BYTES = 8191  # ENTL is a 16-bit count of bits
_N = SM2P256V1.n
_SIZE = 32
_ALG_ID = asn1.sequence(asn1.oid(OID_EC_PUBLIC_KEY), asn1.oid(OID_SM2))


class InvalidSignature(CryptoError):
    """The signature does not verify (or is malformed); the message says which."""


def _rng(_k: int | None) -> Callable[[int], bytes]:
    if _k is None:
        return os.urandom
    fixed = _k.to_bytes(_SIZE, "little")  # gmalglib's byte order, see module doc
    return lambda n: fixed


# -- Z_A and the digest e (curve-generic) ------------------------------------------------
def za(uid: bytes, x: int, y: int, curve: Curve = SM2P256V1) -> bytes:
    """Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A), GB/T 32918.2 §5.5."""
    if len(uid) > MAX_ID_BYTES:
        raise CryptoError(f"the signer ID is at most {MAX_ID_BYTES} bytes")
    size = curve.size
    return sm3_parts([(len(uid) * 8).to_bytes(2, "big"), uid,
                      *(v.to_bytes(size, "big") for v in (curve.a, curve.b, curve.gx, curve.gy,
                                                          x, y))])


# -- signature encodings -------------------------------------------------------------------
def encode_signature(r: int, s: int, fmt: str = "der") -> bytes:
    if fmt == "der":
        return asn1.sequence(asn1.integer(r), asn1.integer(s))
    if fmt == "raw":
        return r.to_bytes(_SIZE, "big") + s.to_bytes(_SIZE, "big")
    raise CryptoError(f"unknown signature format {fmt!r}; one of {', '.join(SIG_FORMATS)}")


def decode_signature(sig: bytes, fmt: str = "der", n: int = _N) -> tuple[int, int]:
    """(r, s), with 1 <= r, s <= n-1 enforced; anything else raises InvalidSignature."""
    if fmt == "raw":
        if len(sig) != 2 * _SIZE:
            raise InvalidSignature(f"a raw SM2 signature is 64 bytes (r||s), got {len(sig)}")
        r, s = int.from_bytes(sig[:_SIZE], "big"), int.from_bytes(sig[_SIZE:], "big")
    elif fmt == "der":
        try:
            parts = asn1.items(asn1.read_all(sig, asn1.SEQUENCE))
            if len(parts) != 2:
                raise asn1.DERError("SEQUENCE must hold exactly r and s")
            r, s = asn1.to_int(parts[0]), asn1.to_int(parts[1])
        except asn1.DERError as exc:
            raise InvalidSignature(f"malformed DER signature: {exc}") from None
    else:
        raise CryptoError(f"unknown signature format {fmt!r}; one of {', '.join(SIG_FORMATS)}")
    if not 1 <= r < n:
        raise InvalidSignature("signature value r is out of range [1, n-1]")
    if not 1 <= s < n:
        raise InvalidSignature("signature value s is out of range [1, n-1]")
    if (r + s) % n == 0:
        raise InvalidSignature("signature has r + s = n")
    return r, s


# -- ciphertext encodings ------------------------------------------------------------------
def encode_ciphertext(c1: bytes, c3: bytes, c2: bytes, fmt: str = "der") -> bytes:
    """c1 is the uncompressed point 04||x||y."""
    if fmt == "c1c3c2":
        return c1 + c3 + c2
    if fmt == "c1c2c3":
        return c1 + c2 + c3
    if fmt == "der":
        half = (len(c1) - 1) // 2
        x, y = int.from_bytes(c1[1:1 + half], "big"), int.from_bytes(c1[1 + half:], "big")
        return asn1.sequence(asn1.integer(x), asn1.integer(y), asn1.octets(c3), asn1.octets(c2))
    raise CryptoError(f"unknown ciphertext format {fmt!r}; one of {', '.join(CT_FORMATS)}")


def decode_ciphertext(ct: bytes, fmt: str = "der", size: int = _SIZE) -> tuple[bytes, bytes, bytes]:
    """-> (C1 as 04||x||y, C3, C2). Structure only; the point is checked by the decryptor."""
    head = 1 + 2 * size
    if fmt in ("c1c3c2", "c1c2c3"):
        if len(ct) <= head + 32 or ct[0] != 4:
            raise DecryptionError()
        c1, rest = ct[:head], ct[head:]
        return (c1, rest[:32], rest[32:]) if fmt == "c1c3c2" else (c1, rest[-32:], rest[:-32])
    if fmt != "der":
        raise CryptoError(f"unknown ciphertext format {fmt!r}; one of {', '.join(CT_FORMATS)}")
    try:
        parts = asn1.items(asn1.read_all(ct, asn1.SEQUENCE))
        if len(parts) != 4:
            raise asn1.DERError("SM2Cipher has four fields")
        x, y = asn1.to_int(parts[0]), asn1.to_int(parts[1])
        c3, c2 = asn1.to_octets(parts[2]), asn1.to_octets(parts[3])
    except asn1.DERError:
        raise DecryptionError() from None
    if x >= 1 << (8 * size) or y >= 1 << (8 * size) or len(c3) != 32 or not c2:
        raise DecryptionError()
    return b"\x04" + x.to_bytes(size, "big") + y.to_bytes(size, "big"), c3, c2


# -- PEM -----------------------------------------------------------------------------------
# A key's PEM is well under 1 KiB; the bound keeps hostile input (HTTP bodies, files) cheap.
MAX_PEM = 64 << 10
_BEGIN, _DASHES = b"-----BEGIN ", b"-----"
_LABEL = re.compile(rb"[A-Z][A-Z ]{0,63}")


def pem_decode(data: bytes | str) -> tuple[str, bytes]:
    """(label, DER) of the first PEM block. A plain scan, each byte looked at a bounded
    number of times: a regex with a back-reference took seconds on a crafted 100 KiB input
    (many BEGIN lines without an END)."""
    if len(data) > MAX_PEM:
        raise CryptoError(f"a PEM document is at most {MAX_PEM} bytes, got {len(data)}")
    raw = data.encode() if isinstance(data, str) else data
    start = raw.find(_BEGIN)
    if start < 0:
        raise CryptoError("not a PEM document (no -----BEGIN ...----- block)")
    label_at = start + len(_BEGIN)
    label_end = raw.find(_DASHES, label_at)
    label = raw[label_at:label_end] if label_end >= 0 else b""
    if not _LABEL.fullmatch(label):
        raise CryptoError("not a PEM document (bad -----BEGIN ...----- line)")
    end_marker = b"-----END " + label + _DASHES
    body_end = raw.find(end_marker, label_end + len(_DASHES))
    if body_end < 0:
        raise CryptoError(f"PEM block {label.decode()} has no -----END line")
    body = raw[label_end + len(_DASHES):body_end]
    try:
        return label.decode(), base64.b64decode(b"".join(body.split()), validate=True)
    except ValueError:
        raise CryptoError("PEM body is not valid base64") from None


def pem_encode(label: str, der: bytes) -> str:
    body = base64.b64encode(der).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"


def _check_alg(alg: asn1.TLV) -> None:
    if alg.tag != asn1.SEQUENCE:
        raise asn1.DERError("bad AlgorithmIdentifier")
    parts = asn1.items(alg.body)
    if len(parts) != 2 or asn1.to_oid(parts[0]) != OID_EC_PUBLIC_KEY:
        raise CryptoError("not an EC key (expected id-ecPublicKey)")
    if parts[1].tag != asn1.OID or asn1.to_oid(parts[1]) != OID_SM2:
        raise CryptoError("not an SM2 key (expected curve OID 1.2.156.10197.1.301)")


# -- keys ----------------------------------------------------------------------------------
class SM2PublicKey:
    """A validated point on sm2p256v1."""

    def __init__(self, point: bytes) -> None:
        if len(point) == 33 and point[0] in (2, 3) and _GM.is_pk_valid(point):
            point = _GM.convert_pk(point)  # accept compressed input, keep uncompressed
        if len(point) != 65 or point[0] != 4:
            raise CryptoError("an SM2 public key is a 65-byte uncompressed point (04||x||y)")
        x, y = int.from_bytes(point[1:33], "big"), int.from_bytes(point[33:], "big")
        if not SM2P256V1.on_curve((x, y)) or not _GM.is_pk_valid(point):
            raise CryptoError("invalid SM2 public key: the point is not on sm2p256v1")
        self._point = point
        self._za: dict[bytes, bytes] = {}

    # construction / export
    @classmethod
    def from_der(cls, der: bytes) -> SM2PublicKey:
        try:
            parts = asn1.items(asn1.read_all(der, asn1.SEQUENCE))
            if len(parts) != 2:
                raise asn1.DERError("SubjectPublicKeyInfo has two fields")
            _check_alg(parts[0])
            return cls(asn1.to_bits(parts[1]))
        except asn1.DERError as exc:
            raise CryptoError(f"malformed SM2 public key: {exc}") from None

    @classmethod
    def from_pem(cls, pem: bytes | str) -> SM2PublicKey:
        label, der = pem_decode(pem)
        if label != "PUBLIC KEY":
            raise CryptoError(f"expected a PUBLIC KEY PEM, got {label}")
        return cls.from_der(der)

    def to_der(self) -> bytes:
        return asn1.sequence(_ALG_ID, asn1.bits(self._point))

    def to_pem(self) -> str:
        return pem_encode("PUBLIC KEY", self.to_der())

    def to_bytes(self) -> bytes:
        return self._point

    @property
    def x(self) -> int:
        return int.from_bytes(self._point[1:33], "big")

    @property
    def y(self) -> int:
        return int.from_bytes(self._point[33:], "big")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SM2PublicKey) and other._point == self._point

    def __hash__(self) -> int:
        return hash(self._point)

    # backends, built on first use
    @cached_property
    def _gm(self) -> _GM:
        return _GM(pk=self._point, rnd_fn=os.urandom)

    @cached_property
    def _ossl(self) -> ossl.Verifier | None:
        return ossl.Verifier(self.to_der()) if ossl.available() else None

    # operations
    def za(self, uid: bytes = DEFAULT_ID) -> bytes:
        z = self._za.get(uid)
        if z is None:
            z = za(uid, self.x, self.y)
            if len(self._za) < 64:  # a few signer IDs per key; bounded anyway
                self._za[uid] = z
        return z

    def digest(self, message: bytes, uid: bytes = DEFAULT_ID) -> bytes:
        """e = SM3(Z_A || M): what `sign_digest`/`verify_digest` take (for large files)."""
        return sm3(self.za(uid) + message)

    def check(self, message: bytes, signature: bytes, *, uid: bytes = DEFAULT_ID,
              fmt: str = "der") -> None:
        """Raise InvalidSignature (with the reason) unless the signature is valid."""
        self.check_digest(self.digest(message, uid), signature, fmt=fmt)

    def check_digest(self, e: bytes, signature: bytes, *, fmt: str = "der") -> None:
        if len(e) != 32:
            raise CryptoError(f"an SM3 digest is 32 bytes, got {len(e)}")
        r, s = decode_signature(signature, fmt)
        verifier = self._ossl
        if verifier is not None:
            ok = verifier.verify_digest(e, encode_signature(r, s, "der"))
        else:
            ok = self._gm.verify_digest(e, encode_signature(r, s, "raw"))
        if not ok:
            raise InvalidSignature("signature does not match the message and key")

    def verify(self, message: bytes, signature: bytes, *, uid: bytes = DEFAULT_ID,
               fmt: str = "der") -> bool:
        try:
            self.check(message, signature, uid=uid, fmt=fmt)
        except InvalidSignature:
            return False
        return True

    def verify_digest(self, e: bytes, signature: bytes, *, fmt: str = "der") -> bool:
        try:
            self.check_digest(e, signature, fmt=fmt)
        except InvalidSignature:
            return False
        return True

    def encrypt(self, plaintext: bytes, *, fmt: str = "der", _k: int | None = None) -> bytes:
        if not plaintext:
            raise CryptoError("SM2 encryption needs at least one byte of plaintext")
        if fmt not in CT_FORMATS:
            raise CryptoError(f"unknown ciphertext format {fmt!r}; one of {', '.join(CT_FORMATS)}")
        gm = self._gm if _k is None else _GM(pk=self._point, rnd_fn=_rng(_k))
        for _ in range(8):
            raw = gm.encrypt(plaintext)  # C1(65) || C3(32) || C2
            # When KDF(x2||y2) is all zeros (GB/T 32918.4 A5: pick another k), gmalglib
            # leaves its loop without a retry and returns C3 and C2 as zero bytes: an
            # undecryptable ciphertext, once in 256 for a one-byte plaintext. A real C3
            # (an SM3 digest) is never all zeros; we retry with a fresh k.
            if any(raw[65:97]):
                return encode_ciphertext(raw[:65], raw[65:97], raw[97:], fmt)
            if _k is not None:
                break
        raise CryptoError("encryption failed: the nonce gave an all-zero key stream")


class SM2PrivateKey:
    """An SM2 private key d in [1, n-2]. Its repr and str never show d."""

    __slots__ = ("_d", "_gm", "_ossl_dec", "public_key")

    def __init__(self, d: int) -> None:
        if not 1 <= d <= _N - 2:
            raise CryptoError("invalid SM2 private key: d must be in [1, n-2]")
        self._d = d
        self._gm = _GM(d.to_bytes(_SIZE, "big"), rnd_fn=os.urandom)
        self._ossl_dec: ossl.Decryptor | None | bool = False  # False: not loaded yet
        self.public_key = SM2PublicKey(_GM.get_pk(d.to_bytes(_SIZE, "big")))

    def __repr__(self) -> str:
        return f"<SM2PrivateKey for {self.public_key.to_bytes()[1:9].hex()}…>"

    __str__ = __repr__

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        while True:
            d = int.from_bytes(os.urandom(_SIZE), "big")
            if 1 <= d <= _N - 2:
                return cls(d)

    @classmethod
    def from_bytes(cls, d: bytes) -> SM2PrivateKey:
        if len(d) != _SIZE:
            raise CryptoError("an SM2 private key scalar is 32 bytes")
        return cls(int.from_bytes(d, "big"))

    def to_bytes(self) -> bytes:
        """The 32-byte scalar, for sealing in the keystore. Never log or return it."""
        return self._d.to_bytes(_SIZE, "big")

    @classmethod
    def from_pem(cls, pem: bytes | str) -> SM2PrivateKey:
        label, der = pem_decode(pem)
        try:
            if label == "PRIVATE KEY":  # PKCS#8
                parts = asn1.items(asn1.read_all(der, asn1.SEQUENCE))
                if len(parts) < 3 or asn1.to_int(parts[0]) != 0:
                    raise asn1.DERError("bad PKCS#8 PrivateKeyInfo")
                _check_alg(parts[1])
                return cls._from_ec_private_key(asn1.to_octets(parts[2]))
            if label == "EC PRIVATE KEY":  # SEC1, as `openssl ec` writes it
                return cls._from_ec_private_key(der)
        except asn1.DERError as exc:
            raise CryptoError(f"malformed SM2 private key: {exc}") from None
        raise CryptoError(f"expected a PRIVATE KEY PEM, got {label}")

    @classmethod
    def _from_ec_private_key(cls, der: bytes) -> SM2PrivateKey:
        parts = asn1.items(asn1.read_all(der, asn1.SEQUENCE))
        if len(parts) < 2 or asn1.to_int(parts[0]) != 1:
            raise asn1.DERError("bad ECPrivateKey")
        d = asn1.to_octets(parts[1])
        if len(d) > _SIZE:
            raise asn1.DERError("private scalar longer than 32 bytes")
        key = cls(int.from_bytes(d, "big"))
        for extra in parts[2:]:
            if extra.tag == 0xA0:  # [0] parameters: must name SM2 if present
                if asn1.to_oid(asn1.read(extra.body)[0]) != OID_SM2:
                    raise CryptoError("not an SM2 key (curve parameters name another curve)")
            elif extra.tag == 0xA1:  # [1] public key: must belong to d
                point = asn1.to_bits(asn1.read(extra.body)[0])
                if point != key.public_key.to_bytes():
                    raise CryptoError("the public key in the file does not match the private key")
        return key

    def _pkcs8(self) -> bytes:
        ec = asn1.sequence(asn1.integer(1), asn1.octets(self.to_bytes()),
                           asn1.tlv(0xA1, asn1.bits(self.public_key.to_bytes())))
        return asn1.sequence(asn1.integer(0), _ALG_ID, asn1.octets(ec))

    def to_pem(self) -> str:
        """PKCS#8 as `openssl genpkey -algorithm SM2` writes it (for tests and offline
        tools; the service never exports private keys)."""
        return pem_encode("PRIVATE KEY", self._pkcs8())

    def _decryptor(self) -> ossl.Decryptor | None:
        """This key in libcrypto, loaded on first use; None without a usable libcrypto."""
        if self._ossl_dec is False:
            dec = None
            if ossl.available():
                try:
                    dec = ossl.Decryptor(self._pkcs8())
                except ValueError:
                    dec = None
            self._ossl_dec = dec
        return self._ossl_dec  # type: ignore[return-value]

    # operations
    def sign(self, message: bytes, *, uid: bytes = DEFAULT_ID, fmt: str = "der",
             _k: int | None = None) -> bytes:
        return self.sign_digest(self.public_key.digest(message, uid), fmt=fmt, _k=_k)

    def sign_digest(self, e: bytes, *, fmt: str = "der", _k: int | None = None) -> bytes:
        if len(e) != 32:
            raise CryptoError(f"an SM3 digest is 32 bytes, got {len(e)}")
        if fmt not in SIG_FORMATS:
            raise CryptoError(f"unknown signature format {fmt!r}; one of {', '.join(SIG_FORMATS)}")
        gm = self._gm if _k is None else _GM(self.to_bytes(), rnd_fn=_rng(_k))
        for _ in range(8):
            raw = gm.sign_digest(e)
            r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            # gmalglib does not retry the (~2^-255) nonces that give r = 0, r + k = n or
            # s = 0 (GB/T 32918.2 §6.1 A3-A6); we do, with a fresh nonce
            if 1 <= r < _N and 1 <= s < _N:
                return raw if fmt == "raw" else encode_signature(r, s)
            if _k is not None:
                break
        raise CryptoError("signing failed: the nonce gave an invalid signature")

    def decrypt(self, ciphertext: bytes, *, fmt: str = "der") -> bytes:
        c1, c3, c2 = decode_ciphertext(ciphertext, fmt)
        if not _GM.is_pk_valid(c1):  # C1 must be a point of the curve (invalid-curve attacks)
            raise DecryptionError()
        dec = self._decryptor()
        if dec is not None:
            # libcrypto compares C3 in constant time (gmalglib's loop stops at the first
            # differing byte: a timing oracle on how much of a forged C3 is right)
            plaintext = dec.decrypt(encode_ciphertext(c1, c3, c2, "der"))
            if plaintext is None:
                raise DecryptionError()
            return plaintext
        try:
            return self._gm.decrypt(c1 + c3 + c2)
        except ValueError:
            raise DecryptionError() from None
