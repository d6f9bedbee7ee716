"""The keystore: SM2 keys by id, with versions, purpose, state and labels, in one JSON file
(by default `<data_dir>/keystore.json`, mode 0600).

At rest every private scalar is sealed with SM4-GCM under a key-encryption key derived from
the master secret (PBKDF2-HMAC-SM3, salt and iteration count in the file). The associated
data binds each sealed scalar to its key id, version and purpose, so moving material between
slots or editing a purpose makes it unusable. Metadata and public keys are readable without
the master secret; nothing private is. A known value sealed under the same KEK tells a wrong
master secret from a damaged file.

States: `active` -> `disabled` (no private use; `enable` returns it) -> `destroyed` (sealed
material erased from the file, no use at all, irreversible). Rotation adds a version and
makes it current; older versions only verify and decrypt.

Several processes (CLI, API workers) share the file: changes are read-modify-write under an
exclusive `flock` and replace the file atomically; readers reload when the file changes.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from crypto_svc import sm4
from crypto_svc.errors import (
    CryptoError,
    DecryptionError,
    KeyNotFound,
    KeyStateError,
    KeystoreError,
)
from crypto_svc.keystore_check import check_document, check_iterations
from crypto_svc.sm2 import SM2PrivateKey, SM2PublicKey
from soc_core.ecs import now_iso

FORMAT = "govsoc-keystore/1"
PURPOSES = ("sign", "encrypt")
STATES = ("active", "disabled", "destroyed")
DEFAULT_ITERATIONS = 200_000
MIN_SECRET = 16
_CHECK = b"govsoc keystore master-secret check"
MAX_LABELS = 32
LABEL_NAME_MAX, LABEL_VALUE_MAX = 64, 256  # characters
RECHECK = 0.2  # seconds between checks of the file for changes by other processes


@dataclass
class KeyVersion:
    version: int
    created: str
    public: SM2PublicKey
    destroyed: bool = False


@dataclass
class KeyInfo:
    """Everything public about a key (safe for listings, events and API answers)."""

    id: str
    purpose: str
    state: str
    created: str
    rotated: str | None
    labels: dict[str, str]
    current: int
    versions: list[KeyVersion] = field(default_factory=list)

    def version(self, number: int | None = None) -> KeyVersion:
        number = self.current if number is None else number
        for v in self.versions:
            if v.version == number:
                return v
        raise KeyNotFound(f"key {self.id} has no version {number}")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "purpose": self.purpose, "state": self.state,
                "created": self.created, "rotated": self.rotated, "labels": dict(self.labels),
                "current_version": self.current,
                "versions": [{"version": v.version, "created": v.created,
                              "state": "destroyed" if v.destroyed else (
                                  "current" if v.version == self.current else "retired")}
                             for v in self.versions]}


def master_secret_from_env(cfg: Any = None) -> bytes | None:
    """GOVSOC_MASTER_KEY, else the file named by GOVSOC_MASTER_KEY_FILE (which must be a
    regular file of mode 0600 or stricter), else None. Both may also come from govsoc.toml."""
    if cfg is None:
        from soc_core.config import load_config

        cfg = load_config()
    value = cfg.get("master_key")
    if value:
        return str(value).encode("utf-8")
    path = cfg.get("master_key_file")
    if not path:
        return None
    p = Path(str(path))
    try:
        st = p.stat()
    except OSError:
        raise KeystoreError(f"GOVSOC_MASTER_KEY_FILE {p} cannot be read") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeystoreError(f"GOVSOC_MASTER_KEY_FILE {p} is not a regular file")
    if st.st_mode & 0o077:
        raise KeystoreError(f"GOVSOC_MASTER_KEY_FILE {p} must have mode 0600, "
                            f"it has {stat.S_IMODE(st.st_mode):04o}")
    try:
        data = p.read_bytes().rstrip(b"\r\n")
    except OSError:
        raise KeystoreError(f"GOVSOC_MASTER_KEY_FILE {p} cannot be read") from None
    return data or None


class Keystore:
    def __init__(self, path: str | os.PathLike[str], master_secret: bytes | None, *,
                 iterations: int = DEFAULT_ITERATIONS) -> None:
        self.path = Path(path)
        self._secret = master_secret
        self._iterations = check_iterations(iterations, "crypto.kdf_iterations")
        if master_secret is not None and len(master_secret) < MIN_SECRET:
            raise KeystoreError(f"the master secret must be at least {MIN_SECRET} bytes")
        self._lock = threading.RLock()
        self._doc: dict[str, Any] | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._fresh_until = 0.0
        self._kek: bytes | None = None
        self._kek_salt: str | None = None
        self._private: dict[tuple[str, int], SM2PrivateKey] = {}
        self._public: dict[tuple[str, int], SM2PublicKey] = {}

    @classmethod
    def from_config(cls, cfg: Any = None) -> Keystore:
        if cfg is None:
            from soc_core.config import load_config

            cfg = load_config()
        path = cfg.get("crypto.keystore") or (Path(cfg.data_dir) / "keystore.json")
        iterations = cfg.get("crypto.kdf_iterations", DEFAULT_ITERATIONS)
        return cls(path, master_secret_from_env(cfg), iterations=iterations)

    # -- file I/O ------------------------------------------------------------------------
    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self) -> dict[str, Any]:
        """The current document, re-read when the file changed (another process wrote)."""
        with self._lock:
            now = time.monotonic()
            if self._doc is not None and now < self._fresh_until:
                return self._doc
            stamp = self._file_stamp()
            # a stat costs ~30 us here: other processes' changes are picked up within
            # RECHECK seconds, this process's own changes at once (_mutate resets _doc)
            self._fresh_until = now + RECHECK
            if self._doc is not None and stamp == self._stamp:
                return self._doc
            if stamp is None:
                doc: dict[str, Any] = {"format": FORMAT, "keys": {}}
            else:
                try:
                    doc = json.loads(self.path.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise KeystoreError(f"keystore {self.path} is unreadable: "
                                        f"{type(exc).__name__}") from None
                check_document(doc, self.path, (FORMAT,), PURPOSES, STATES)
            self._doc, self._stamp = doc, stamp
            # keys whose state changed must not stay usable from the cache
            self._private.clear()
            return doc

    @contextlib.contextmanager
    def _mutate(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write under an exclusive lock shared with other processes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with self._lock, open(lock_path, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                self._doc = None  # always start from the file on disk
                doc = json.loads(json.dumps(self._load()))  # a private copy to edit
                yield doc
                _write_private(self.path, doc)
                self._doc = None
                self._load()
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    # -- the key-encryption key ----------------------------------------------------------
    def _require_secret(self) -> bytes:
        if self._secret is None:
            raise KeystoreError("no master secret: set GOVSOC_MASTER_KEY or "
                                "GOVSOC_MASTER_KEY_FILE (a file of mode 0600)")
        return self._secret

    def _kek_for(self, doc: dict[str, Any]) -> bytes:
        secret = self._require_secret()
        kdf = doc.get("kdf")
        if kdf is None:
            raise KeystoreError("keystore has no KEK parameters")  # only new docs lack them
        if self._kek is not None and self._kek_salt == kdf["salt"]:
            return self._kek
        kek = PBKDF2HMAC(hashes.SM3(), sm4.KEY_SIZE, bytes.fromhex(kdf["salt"]),
                         int(kdf["iterations"])).derive(secret)
        try:
            sm4.open_sealed(kek, base64.b64decode(doc["check"]), aad=b"check")
        except DecryptionError:
            raise KeystoreError(f"wrong master secret: it does not open the keystore "
                                f"{self.path}") from None
        self._kek, self._kek_salt = kek, kdf["salt"]
        return kek

    def _init_kek(self, doc: dict[str, Any]) -> bytes:
        """A new keystore takes its KEK parameters from the first master secret used."""
        if "kdf" not in doc:
            secret = self._require_secret()
            salt = secrets.token_hex(16)
            kek = PBKDF2HMAC(hashes.SM3(), sm4.KEY_SIZE, bytes.fromhex(salt),
                             self._iterations).derive(secret)
            doc["kdf"] = {"name": "pbkdf2-hmac-sm3", "salt": salt,
                          "iterations": self._iterations}
            doc["check"] = base64.b64encode(sm4.seal(kek, _CHECK, aad=b"check")).decode()
        return self._kek_for(doc)

    @staticmethod
    def _aad(key_id: str, version: int, purpose: str) -> bytes:
        return f"govsoc-key|{key_id}|{version}|{purpose}".encode()

    def unlock(self) -> None:
        """Check the master secret now (raises KeystoreError if absent or wrong)."""
        doc = self._load()
        if "kdf" in doc:
            self._kek_for(doc)
        else:
            self._require_secret()

    # -- reading -------------------------------------------------------------------------
    def _entry(self, doc: dict[str, Any], key_id: str) -> dict[str, Any]:
        entry = doc["keys"].get(key_id)
        if entry is None:
            shown = key_id if len(key_id) <= 64 else key_id[:64] + "..."
            raise KeyNotFound(f"no key {shown!r} in the keystore")
        return entry

    def _info(self, entry: dict[str, Any]) -> KeyInfo:
        versions = []
        for v in entry["versions"]:
            ck = (entry["id"], v["version"])
            pub = self._public.get(ck)
            if pub is None:
                try:
                    pub = SM2PublicKey(bytes.fromhex(v["public"]))
                except (ValueError, CryptoError):
                    raise KeystoreError(f"keystore {self.path} is damaged: key "
                                        f"{entry['id']} version {v['version']} public key "
                                        "is not a point of the curve") from None
                self._public[ck] = pub
            versions.append(KeyVersion(v["version"], v["created"], pub, v["sealed"] is None))
        return KeyInfo(entry["id"], entry["purpose"], entry["state"], entry["created"],
                       entry.get("rotated"), dict(entry.get("labels", {})), entry["current"],
                       versions)

    def list(self) -> list[KeyInfo]:
        doc = self._load()
        return [self._info(e) for e in sorted(doc["keys"].values(), key=lambda e: e["created"])]

    def info(self, key_id: str) -> KeyInfo:
        return self._info(self._entry(self._load(), key_id))

    def public_key(self, key_id: str, version: int | None = None) -> tuple[SM2PublicKey, int]:
        info = self.info(key_id)
        if info.state == "destroyed":
            raise KeyStateError(f"key {key_id} is destroyed")
        v = info.version(version)
        return v.public, v.version

    def private_key(self, key_id: str, version: int | None = None, *,
                    purpose: str | None = None) -> tuple[SM2PrivateKey, int]:
        """The unsealed key of an *active* key (current version unless one is named)."""
        with self._lock:
            doc = self._load()
            entry = self._entry(doc, key_id)
            if entry["state"] != "active":
                raise KeyStateError(f"key {key_id} is {entry['state']}")
            if purpose and entry["purpose"] != purpose:
                raise KeyStateError(f"key {key_id} is for {entry['purpose']}, not {purpose}")
            number = entry["current"] if version is None else version
            cached = self._private.get((key_id, number))
            if cached is not None:
                return cached, number
            slot = next((v for v in entry["versions"] if v["version"] == number), None)
            if slot is None:
                raise KeyNotFound(f"key {key_id} has no version {number}")
            if slot["sealed"] is None:
                raise KeyStateError(f"key {key_id} version {number} is destroyed")
            kek = self._kek_for(doc)
            try:
                scalar = sm4.open_sealed(kek, base64.b64decode(slot["sealed"]),
                                         aad=self._aad(key_id, number, entry["purpose"]))
            except DecryptionError:
                raise KeystoreError(f"key {key_id} version {number} does not unseal: the "
                                    "keystore entry was altered") from None
            try:
                key = SM2PrivateKey.from_bytes(scalar)
            except (ValueError, CryptoError):
                raise KeystoreError(f"key {key_id} version {number} does not unseal to a "
                                    "key") from None
            self._private[(key_id, number)] = key
            return key, number

    # -- changing --------------------------------------------------------------------------
    def _new_version(self, kek: bytes, key_id: str, version: int, purpose: str) -> dict[str, Any]:
        key = SM2PrivateKey.generate()
        sealed = sm4.seal(kek, key.to_bytes(), aad=self._aad(key_id, version, purpose))
        return {"version": version, "created": now_iso(),
                "public": key.public_key.to_bytes().hex(),
                "sealed": base64.b64encode(sealed).decode()}

    def create(self, purpose: str, labels: dict[str, str] | None = None) -> KeyInfo:
        if purpose not in PURPOSES:
            raise CryptoError(f"purpose must be one of {', '.join(PURPOSES)}, got {purpose!r}")
        labels = _check_labels(labels or {})
        with self._mutate() as doc:
            kek = self._init_kek(doc)
            key_id = "k" + secrets.token_hex(8)
            now = now_iso()
            doc["keys"][key_id] = {"id": key_id, "purpose": purpose, "state": "active",
                                   "created": now, "rotated": None, "labels": labels,
                                   "current": 1,
                                   "versions": [self._new_version(kek, key_id, 1, purpose)]}
        return self.info(key_id)

    def rotate(self, key_id: str) -> KeyInfo:
        with self._mutate() as doc:
            entry = self._entry(doc, key_id)
            if entry["state"] != "active":
                raise KeyStateError(f"key {key_id} is {entry['state']}; only active keys rotate")
            kek = self._kek_for(doc)
            number = max(v["version"] for v in entry["versions"]) + 1
            entry["versions"].append(self._new_version(kek, key_id, number, entry["purpose"]))
            entry["current"] = number
            entry["rotated"] = now_iso()
        return self.info(key_id)

    def set_state(self, key_id: str, state: str) -> KeyInfo:
        if state not in STATES:
            raise CryptoError(f"state must be one of {', '.join(STATES)}")
        with self._mutate() as doc:
            entry = self._entry(doc, key_id)
            if entry["state"] == "destroyed":
                raise KeyStateError(f"key {key_id} is destroyed; that cannot be undone")
            if state == "destroyed":
                self._kek_for(doc)  # only a holder of the master secret may destroy
                for v in entry["versions"]:
                    v["sealed"] = None
            entry["state"] = state
            entry["state_changed"] = now_iso()
        return self.info(key_id)

    def disable(self, key_id: str) -> KeyInfo:
        return self.set_state(key_id, "disabled")

    def enable(self, key_id: str) -> KeyInfo:
        return self.set_state(key_id, "active")

    def destroy(self, key_id: str) -> KeyInfo:
        return self.set_state(key_id, "destroyed")


def _write_private(path: Path, doc: dict[str, Any]) -> None:
    """Replace `path` atomically with `doc`, mode 0600 from the first byte. The temporary
    file is created fresh (O_EXCL): reusing one a crashed run left behind would keep that
    file's mode, which O_CREAT does not reset."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    # the rename itself is durable only once the directory is synced
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    if not isinstance(labels, dict) or len(labels) > MAX_LABELS:
        raise CryptoError(f"labels must be at most {MAX_LABELS} key=value pairs")
    out = {}
    for k, v in labels.items():
        if (not isinstance(k, str) or not k or len(k) > LABEL_NAME_MAX or not isinstance(v, str)
                or len(v) > LABEL_VALUE_MAX):
            # the caller's input (400), not the keystore failing (503)
            raise CryptoError(f"a label is a name of 1-{LABEL_NAME_MAX} characters and a value of "
                              f"at most {LABEL_VALUE_MAX}")
        out[k] = v
    return out
