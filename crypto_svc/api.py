"""HTTP routes of the crypto service, as a FastAPI `APIRouter` that `soc_api` mounts.

Identity is a dependency: `make_router(service, principal=...)` takes any FastAPI dependency
that returns the caller (a str, or an object with `.name`); `soc_api` passes its
authenticated principal there, and the name becomes `user.name` in every audit event.
`may_use(principal, key_id)` says whether that caller may use a key: a key it may not use
is answered as unknown (404), so a token scoped to one key learns nothing of the others.
The default, for tests and the bench, is the fixed principal "local" with every key.

JSON in and out; binary values are base64. Errors carry a one-line `detail`: 400 bad input,
404 unknown key, 409 key state or purpose forbids it, 413 too large, 422 malformed request,
503 the keystore cannot be opened (no or wrong master secret).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from crypto_svc.errors import CryptoError, KeyNotFound, KeyStateError, KeystoreError
from crypto_svc.keystore import LABEL_NAME_MAX, LABEL_VALUE_MAX, MAX_LABELS
from crypto_svc.service import CryptoService, Verdict
from crypto_svc.sm2 import DEFAULT_ID, MAX_PEM, SM2PublicKey


@dataclass(frozen=True)
class Limits:
    max_data: int = 1 << 20  # bytes of one decoded payload
    max_body: int = 16 << 20  # bytes of one request body
    max_batch: int = 1000  # items in one batch sign


async def local_principal() -> str:
    """The fixed identity of the standalone app; `soc_api` replaces it. (Dependencies here
    are `async def`: a plain `def` dependency costs a thread-pool hop on every request.)"""
    return "local"


# -- request models --------------------------------------------------------------------
_B64 = Field(description="base64")
# Key ids are "k" + 16 hex digits; the bound keeps a hostile id out of errors and audit
# events, while a well-formed id that does not exist still gets its 404.
_KEY_ID_MAX = 64
KeyId = Annotated[str, Field(min_length=1, max_length=_KEY_ID_MAX)]
Version = Annotated[int, Field(ge=1, le=1 << 31)]
# a public key PEM is a few hundred bytes; longer input is refused before it is parsed
Pem = Annotated[str, Field(max_length=MAX_PEM)]


LabelName = Annotated[str, Field(min_length=1, max_length=LABEL_NAME_MAX)]
LabelValue = Annotated[str, Field(max_length=LABEL_VALUE_MAX)]


class KeyCreate(BaseModel):
    purpose: Literal["sign", "encrypt"]
    # the keystore's bounds, checked at the boundary: a bad label is the caller's 422
    labels: dict[LabelName, LabelValue] = Field(default_factory=dict, max_length=MAX_LABELS)


class SignRequest(BaseModel):
    key_id: KeyId
    data: str | None = Field(None, description="base64 message (single)")
    items: list[str] | None = Field(None, description="base64 messages (batch)")
    uid: str | None = None
    format: Literal["der", "raw"] = "der"
    prehashed: bool = Field(False, description="data is e = SM3(Z_A || M), 32 bytes")


class VerifyRequest(BaseModel):
    key_id: KeyId | None = None
    public_key_pem: Pem | None = None
    version: Version | None = None
    data: str = _B64
    signature: str = _B64
    uid: str | None = None
    format: Literal["der", "raw"] = "der"
    prehashed: bool = False


class EncryptRequest(BaseModel):
    key_id: KeyId | None = None
    public_key_pem: Pem | None = None
    data: str = _B64
    format: Literal["der", "c1c3c2", "c1c2c3"] = "der"


class DecryptRequest(BaseModel):
    key_id: KeyId
    version: Version | None = None
    ciphertext: str = _B64
    format: Literal["der", "c1c3c2", "c1c2c3"] = "der"


class HashRequest(BaseModel):
    data: str = _B64


class HmacRequest(BaseModel):
    key: str = _B64
    data: str = _B64


# -- helpers ---------------------------------------------------------------------------
def _http_error(exc: CryptoError) -> HTTPException:
    if isinstance(exc, KeyNotFound):
        return HTTPException(404, str(exc))
    if isinstance(exc, KeyStateError):
        return HTTPException(409, str(exc))
    if isinstance(exc, KeystoreError):
        return HTTPException(503, str(exc))
    return HTTPException(400, str(exc))


def _uid(value: str | None) -> bytes:
    if value is None:
        return DEFAULT_ID
    uid = value.encode("utf-8")
    if not uid:
        raise HTTPException(400, "uid must not be empty")
    return uid


def _name_of(principal: Any) -> str:
    if isinstance(principal, str):
        return principal
    name = getattr(principal, "name", None) or getattr(principal, "username", None)
    if not name:
        raise HTTPException(401, "no authenticated principal")
    return str(name)


def _user(principal: Any) -> Any:
    """The caller's name, or the principal itself when it carries its audit context
    (`audit_context()`: role, department, source address, request id)."""
    name = _name_of(principal)
    return principal if callable(getattr(principal, "audit_context", None)) else name


def _verdict(v: Verdict) -> dict[str, Any]:
    return {"valid": v.valid, "key_id": v.key_id, "version": v.version, "reason": v.reason}


def make_router(service: CryptoService | Callable[[], CryptoService], *,
                principal: Callable[..., Any] = local_principal,
                may_use: Callable[[Any, str], bool] = lambda _p, _k: True,
                limits: Limits = Limits(), bodies_bounded: bool = False) -> APIRouter:
    """The /crypto routes over `service` (or a zero-argument callable returning it, for
    apps that build the service at startup). `bodies_bounded`: the app in front already
    refuses a body over `limits.max_body` and a chunked one before reading it (soc_api's
    Guard), so the routes need not check again (one dependency less a request)."""
    get_service = service if callable(service) and not isinstance(service, CryptoService) \
        else (lambda: service)

    def decode(value: str, what: str) -> bytes:
        if len(value) > (limits.max_data * 4) // 3 + 4:
            raise HTTPException(413, f"{what} is larger than {limits.max_data} bytes")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(400, f"{what} is not valid base64") from None

    async def body_limit(request: Request) -> None:
        """Refuse a large body before it is read: the length must be declared (a chunked
        body of unknown size would be read whole first)."""
        if request.method != "POST":
            return
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            raise HTTPException(411, "a Content-Length header is required")
        if int(length) > limits.max_body:
            raise HTTPException(413, f"request body is larger than {limits.max_body} bytes")

    # the principal is the routes' one dependency of their own (besides the body limit):
    # FastAPI 0.165 spends more on each dependency it solves than on a signature here
    caller = Depends(principal)

    def granted(p: Any, key_id: str | None) -> None:
        if key_id is not None and not may_use(p, key_id):
            raise HTTPException(404, f"key {key_id} not found")

    def public_key(pem: str) -> SM2PublicKey:
        try:
            return SM2PublicKey.from_pem(pem)
        except CryptoError as exc:
            raise HTTPException(400, f"public_key_pem: {exc}") from None

    router = APIRouter(prefix="/crypto", tags=["crypto"],
                       dependencies=[] if bodies_bounded else [Depends(body_limit)])

    # -- operations ------------------------------------------------------------------------
    # `async def` on purpose: each call is ~0.1 ms of C code, cheaper inline on the event
    # loop than a hop to the thread pool.
    @router.post("/sign")
    async def sign(req: SignRequest, p: Any = caller) -> dict[str, Any]:
        granted(p, req.key_id)
        svc = get_service()
        uid = _uid(req.uid)
        if (req.data is None) == (req.items is None):
            raise HTTPException(400, "give either data (one message) or items (a batch)")
        try:
            if req.data is not None:
                s = svc.sign(req.key_id, decode(req.data, "data"), uid=uid, fmt=req.format,
                             prehashed=req.prehashed, user=_user(p))
                return {"key_id": s.key_id, "version": s.version,
                        "signature": base64.b64encode(s.signature).decode()}
            assert req.items is not None
            if len(req.items) > limits.max_batch:
                raise HTTPException(413, f"a batch holds at most {limits.max_batch} items")
            if req.prehashed:
                raise HTTPException(400, "batch signing takes messages, not digests")
            messages = [decode(item, f"items[{i}]") for i, item in enumerate(req.items)]
            signed = svc.sign_many(req.key_id, messages, uid=uid, fmt=req.format,
                                   user=_user(p))
        except CryptoError as exc:
            raise _http_error(exc) from None
        return {"key_id": req.key_id,
                "signatures": [{"version": s.version,
                                "signature": base64.b64encode(s.signature).decode()}
                               for s in signed]}

    @router.post("/verify")
    async def verify(req: VerifyRequest, p: Any = caller) -> dict[str, Any]:
        granted(p, req.key_id)
        if (req.key_id is None) == (req.public_key_pem is None):
            raise HTTPException(400, "give exactly one of key_id or public_key_pem")
        data, sig = decode(req.data, "data"), decode(req.signature, "signature")
        try:
            if req.public_key_pem is not None:
                if req.prehashed:
                    raise HTTPException(400, "prehashed needs key_id")
                return _verdict(CryptoService.verify_with_public(
                    public_key(req.public_key_pem), data, sig, uid=_uid(req.uid),
                    fmt=req.format))
            assert req.key_id is not None
            return _verdict(get_service().verify(
                req.key_id, data, sig, version=req.version, uid=_uid(req.uid), fmt=req.format,
                prehashed=req.prehashed, user=_user(p)))
        except CryptoError as exc:
            raise _http_error(exc) from None

    @router.post("/encrypt")
    async def encrypt(req: EncryptRequest, p: Any = caller) -> dict[str, Any]:
        granted(p, req.key_id)
        if (req.key_id is None) == (req.public_key_pem is None):
            raise HTTPException(400, "give exactly one of key_id or public_key_pem")
        data = decode(req.data, "data")
        try:
            if req.public_key_pem is not None:
                ct, version = public_key(req.public_key_pem).encrypt(data, fmt=req.format), None
            else:
                assert req.key_id is not None
                ct, version = get_service().encrypt(req.key_id, data, fmt=req.format,
                                                    user=_user(p))
        except CryptoError as exc:
            raise _http_error(exc) from None
        return {"key_id": req.key_id, "version": version,
                "ciphertext": base64.b64encode(ct).decode()}

    @router.post("/decrypt")
    async def decrypt(req: DecryptRequest, p: Any = caller) -> dict[str, Any]:
        granted(p, req.key_id)
        ct = decode(req.ciphertext, "ciphertext")
        try:
            pt, version = get_service().decrypt(req.key_id, ct, fmt=req.format,
                                                version=req.version, user=_user(p))
        except CryptoError as exc:
            raise _http_error(exc) from None
        return {"key_id": req.key_id, "version": version, "data": base64.b64encode(pt).decode()}

    @router.post("/hash")
    async def hash_(req: HashRequest) -> dict[str, Any]:
        return {"sm3": CryptoService.hash(decode(req.data, "data"))}

    @router.post("/hmac")
    async def hmac_(req: HmacRequest) -> dict[str, Any]:
        key = decode(req.key, "key")
        try:
            return {"hmac_sm3": CryptoService.hmac(key, decode(req.data, "data"))}
        except CryptoError as exc:
            raise _http_error(exc) from None

    # -- keys ------------------------------------------------------------------------------
    @router.post("/keys", status_code=201)
    def create_key(req: KeyCreate, p: Any = caller) -> dict[str, Any]:
        try:
            info = get_service().create_key(req.purpose, req.labels, user=_user(p))
        except CryptoError as exc:
            raise _http_error(exc) from None
        return _key_view(info)

    @router.get("/keys")
    def list_keys(p: Any = caller) -> dict[str, Any]:
        try:
            return {"keys": [_key_view(k) for k in get_service().list_keys()
                             if may_use(p, k.id)]}
        except CryptoError as exc:
            raise _http_error(exc) from None

    path_id = PathParam(max_length=_KEY_ID_MAX)

    @router.get("/keys/{key_id}")
    def get_key(key_id: str = path_id, p: Any = caller) -> dict[str, Any]:
        granted(p, key_id)
        try:
            return _key_view(get_service().key_info(key_id))
        except CryptoError as exc:
            raise _http_error(exc) from None

    def admin(action: str) -> Callable[..., dict[str, Any]]:
        def endpoint(key_id: str = path_id, p: Any = caller) -> dict[str, Any]:
            granted(p, key_id)
            try:
                change = getattr(get_service(), f"{action}_key")
                return _key_view(change(key_id, user=_user(p)))
            except CryptoError as exc:
                raise _http_error(exc) from None

        endpoint.__name__ = f"{action}_key"
        return endpoint

    for action in ("rotate", "disable", "enable", "destroy"):
        router.post(f"/keys/{{key_id}}/{action}")(admin(action))

    return router


def _key_view(info: Any) -> dict[str, Any]:
    view = info.to_dict()
    if info.state != "destroyed":
        view["public_key_pem"] = info.version().public.to_pem()
    return view


async def one_line_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with a one-line `detail` (FastAPI's default is a list of error objects). An
    app-level handler: `soc_api` installs its own equivalent."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}"
             for e in errors[:3]]
    return JSONResponse({"detail": "; ".join(parts) or "malformed request"}, status_code=422)


def create_app(service: CryptoService | None = None, *,
               principal: Callable[..., Any] = local_principal,
               limits: Limits = Limits()) -> FastAPI:
    """A standalone app with just the crypto routes (tests, bench). Without a service, one
    is built at startup from the configuration (keystore, master secret, event store for
    the audit trail) and closed at shutdown, draining the audit trail."""
    holder: dict[str, CryptoService] = {}
    if service is not None:
        holder["svc"] = service

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        own = "svc" not in holder
        if own:
            holder["svc"] = CryptoService.from_config(name="api")
        try:
            yield
        finally:
            if own:
                holder["svc"].close()

    app = FastAPI(title="govsoc crypto", lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, one_line_validation_error)
    app.include_router(make_router(lambda: holder["svc"], principal=principal, limits=limits))
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory (`uvicorn --factory crypto_svc.api:app_from_env`): configuration from
    GOVSOC_* variables / govsoc.toml."""
    return create_app()
