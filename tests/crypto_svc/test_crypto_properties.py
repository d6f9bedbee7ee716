"""Property tests: round trips hold for any input, and any one-bit change of the message,
the signature or the ciphertext is rejected."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto_svc import sm4
from crypto_svc.errors import CryptoError, DecryptionError
from crypto_svc.sm2 import CT_FORMATS, SM2PrivateKey

KEY = SM2PrivateKey.generate()
PUB = KEY.public_key
SM4_KEY = sm4.generate_key()
FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def flip(data: bytes, bit: int) -> bytes:
    bit %= len(data) * 8
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@FAST
@given(msg=st.binary(max_size=2048), uid=st.binary(min_size=1, max_size=64),
       fmt=st.sampled_from(["der", "raw"]), bit=st.integers(min_value=0))
def test_sign_verify_and_bit_flips(msg, uid, fmt, bit):
    sig = KEY.sign(msg, uid=uid, fmt=fmt)
    assert PUB.verify(msg, sig, uid=uid, fmt=fmt)
    assert not PUB.verify(msg, flip(sig, bit), uid=uid, fmt=fmt)
    if msg:
        assert not PUB.verify(flip(msg, bit), sig, uid=uid, fmt=fmt)
    assert not PUB.verify(msg, sig, uid=flip(uid, bit), fmt=fmt)


@FAST
@given(msg=st.binary(min_size=1, max_size=1024), fmt=st.sampled_from(CT_FORMATS),
       bit=st.integers(min_value=0))
def test_encrypt_decrypt_and_bit_flips(msg, fmt, bit):
    ct = PUB.encrypt(msg, fmt=fmt)
    assert KEY.decrypt(ct, fmt=fmt) == msg
    with pytest.raises(DecryptionError):
        KEY.decrypt(flip(ct, bit), fmt=fmt)


@FAST
@given(msg=st.binary(max_size=4096), aad=st.binary(max_size=64), bit=st.integers(min_value=0))
def test_sm4_gcm_round_trip_and_bit_flips(msg, aad, bit):
    sealed = sm4.seal(SM4_KEY, msg, aad=aad)
    assert sm4.open_sealed(SM4_KEY, sealed, aad=aad) == msg
    with pytest.raises(DecryptionError):
        sm4.open_sealed(SM4_KEY, flip(sealed, bit), aad=aad)
    if aad:
        with pytest.raises(DecryptionError):
            sm4.open_sealed(SM4_KEY, sealed, aad=flip(aad, bit))


@FAST
@given(msg=st.binary(max_size=4096), mode=st.sampled_from(["cbc", "ctr"]))
def test_sm4_cbc_ctr_round_trip(msg, mode):
    sealed = sm4.seal(SM4_KEY, msg, mode=mode)
    assert sm4.open_sealed(SM4_KEY, sealed, mode=mode) == msg
    assert sm4.seal(SM4_KEY, msg, mode=mode) != sealed  # a fresh IV every time


def test_out_of_range_signature_values_are_rejected():
    from crypto_svc.curves import SM2P256V1
    from crypto_svc.sm2 import InvalidSignature, encode_signature

    n = SM2P256V1.n
    for r, s in ((0, 1), (1, 0), (n, 1), (1, n), (n + 5, 7), (5, n - 5)):
        with pytest.raises(InvalidSignature):
            PUB.check(b"m", encode_signature(r, s))
    with pytest.raises(InvalidSignature, match="malformed DER"):
        PUB.check(b"m", b"\x30\x03\x02\x01")


def test_ciphertext_with_a_point_off_the_curve_is_rejected():
    ct = PUB.encrypt(b"wrap me", fmt="c1c3c2")
    bad_point = ct[:64] + bytes([ct[64] ^ 1]) + ct[65:]
    with pytest.raises(DecryptionError):
        KEY.decrypt(bad_point, fmt="c1c3c2")
    with pytest.raises(CryptoError, match="at least one byte"):
        PUB.encrypt(b"")
