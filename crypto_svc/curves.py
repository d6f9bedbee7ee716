"""Prime curves for SM2 and a small pure-Python reference of the SM2 algorithms on *any*
curve.

The service itself runs SM2 on the recommended curve sm2p256v1 through C code
(`crypto_svc.sm2`). This reference exists because GB/T 32918 parts 2 and 4 give their worked
examples on a different, *example* curve that no fast library supports: the reference runs
those examples and cross-checks the fast path on sm2p256v1. It is plain affine arithmetic,
slow (milliseconds an operation) and not constant-time — never use it for live keys.
"""

from __future__ import annotations

from dataclasses import dataclass

Point = tuple[int, int] | None  # None is the point at infinity


@dataclass(frozen=True)
class Curve:
    name: str
    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int

    @property
    def size(self) -> int:
        return (self.p.bit_length() + 7) // 8

    @property
    def g(self) -> Point:
        return (self.gx, self.gy)

    def on_curve(self, pt: Point) -> bool:
        if pt is None:
            return False
        x, y = pt
        if not (0 <= x < self.p and 0 <= y < self.p):
            return False
        return (y * y - (x * x * x + self.a * x + self.b)) % self.p == 0

    @classmethod
    def from_hex(cls, name: str, params: dict[str, str]) -> Curve:
        return cls(name, *(int(params[k], 16) for k in ("p", "a", "b", "gx", "gy", "n")))


SM2P256V1 = Curve(
    "sm2p256v1",
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
)


# -- affine arithmetic (reference only) ------------------------------------------------
def add(c: Curve, p1: Point, p2: Point) -> Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    x1, y1 = p1
    x2, y2 = p2
    if x1 == x2:
        if (y1 + y2) % c.p == 0:
            return None
        lam = (3 * x1 * x1 + c.a) * pow(2 * y1, -1, c.p) % c.p
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, c.p) % c.p
    x3 = (lam * lam - x1 - x2) % c.p
    return (x3, (lam * (x1 - x3) - y1) % c.p)


def mul(c: Curve, k: int, pt: Point) -> Point:
    result: Point = None
    addend = pt
    while k:
        if k & 1:
            result = add(c, result, addend)
        addend = add(c, addend, addend)
        k >>= 1
    return result


def point_bytes(c: Curve, pt: Point) -> bytes:
    assert pt is not None
    return b"\x04" + pt[0].to_bytes(c.size, "big") + pt[1].to_bytes(c.size, "big")


def point_from_bytes(c: Curve, data: bytes) -> Point:
    if len(data) != 1 + 2 * c.size or data[0] != 4:
        raise ValueError("not an uncompressed point")
    pt = (int.from_bytes(data[1:1 + c.size], "big"), int.from_bytes(data[1 + c.size:], "big"))
    if not c.on_curve(pt):
        raise ValueError("point is not on the curve")
    return pt


# -- SM2 on any curve (GB/T 32918.2 §6, .4 §6) ------------------------------------------
def sign_digest(c: Curve, d: int, e: bytes, k: int) -> tuple[int, int]:
    """Signature (r, s) of the digest e = SM3(Z_A || M) with the given nonce k."""
    ei = int.from_bytes(e, "big")
    x1, _ = mul(c, k, c.g)  # type: ignore[misc]
    r = (ei + x1) % c.n
    if r == 0 or r + k == c.n:
        raise ValueError("k gives r = 0 or r + k = n; pick another k")
    s = pow(1 + d, -1, c.n) * (k - r * d) % c.n
    if s == 0:
        raise ValueError("k gives s = 0; pick another k")
    return r, s


def verify_digest(c: Curve, pub: Point, e: bytes, r: int, s: int) -> bool:
    if not (1 <= r < c.n and 1 <= s < c.n):
        return False
    t = (r + s) % c.n
    if t == 0:
        return False
    pt = add(c, mul(c, s, c.g), mul(c, t, pub))
    if pt is None:
        return False
    return (int.from_bytes(e, "big") + pt[0]) % c.n == r


def encrypt(c: Curve, pub: Point, msg: bytes, k: int) -> tuple[bytes, bytes, bytes]:
    """-> (C1, C3, C2) with the given k."""
    from crypto_svc.sm3 import kdf, sm3

    c1 = point_bytes(c, mul(c, k, c.g))
    x2, y2 = mul(c, k, pub)  # type: ignore[misc]
    xb, yb = x2.to_bytes(c.size, "big"), y2.to_bytes(c.size, "big")
    t = kdf(xb + yb, len(msg))
    if not any(t):
        raise ValueError("KDF gave all zeros; pick another k")
    c2 = bytes(a ^ b for a, b in zip(msg, t, strict=True))
    return c1, sm3(xb + msg + yb), c2


def decrypt(c: Curve, d: int, c1: bytes, c3: bytes, c2: bytes) -> bytes:
    from crypto_svc.sm3 import kdf, sm3

    x2, y2 = mul(c, d, point_from_bytes(c, c1))  # type: ignore[misc]
    xb, yb = x2.to_bytes(c.size, "big"), y2.to_bytes(c.size, "big")
    t = kdf(xb + yb, len(c2))
    msg = bytes(a ^ b for a, b in zip(c2, t, strict=True))
    if not any(t) or sm3(xb + msg + yb) != c3:
        raise ValueError("C3 does not match")
    return msg
