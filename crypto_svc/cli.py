"""`govsoc crypto ...`: SM2/SM3/SM4 from the command line, scriptable and stable.

Exit codes: 0 success (and "valid" for verify), 1 "invalid signature" from verify,
2 a user error (one line on stderr). `-` names stdin/stdout. Every use of a keystore key is
recorded in the audit trail (on disk first, then the configured event store;
`--store` to name another).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import BinaryIO

import click
import orjson

from crypto_svc.errors import CryptoError
from crypto_svc.sm2 import CT_FORMATS, DEFAULT_ID, SM2PublicKey
from soc_core.cliutil import fail, store_option
from soc_core.config import ConfigError, load_config

_ERRORS = (CryptoError, ConfigError)


@contextlib.contextmanager
def _service(store_url: str | None) -> Iterator:
    from crypto_svc.service import CryptoService

    try:
        cfg = load_config()
        # the store is reached in the background: while it is down the audit records wait
        # in the on-disk trail and key use goes on (up to the trail's spool limit)
        svc = CryptoService.from_config(cfg, store_url or cfg.store_url, name="cli")
    except _ERRORS as exc:
        fail(str(exc))
    try:
        try:
            yield svc
        except _ERRORS as exc:
            fail(str(exc))
    finally:
        svc.close()
        if svc.audit.pending_bytes:
            why = f" ({svc.audit.errors[-1]})" if svc.audit.errors else ""
            click.echo(f"warning: audit records wait on disk for the event store{why}",
                       err=True)


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


@contextlib.contextmanager
def _open_in(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        fh = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    with fh:
        yield fh


def _write(path: str, data: bytes, *, private: bool = False) -> None:
    """Write the output; `private` (decrypted plaintext) creates a new file with mode 0600
    instead of the umask's usual 0644, so other users of the host cannot read it."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")


def _uid(value: str | None) -> bytes:
    uid = DEFAULT_ID if value is None else value.encode("utf-8")
    if not uid:
        fail("--id must not be empty")
    return uid


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep:
            name, rest = "name", value
        if not name:
            fail(f"bad --label {value!r}: use name=value, e.g. department=finance")
        labels[name] = rest
    return labels


def _public_from_file(path: str) -> SM2PublicKey:
    try:
        return SM2PublicKey.from_pem(_read(path))
    except CryptoError as exc:
        fail(f"{path}: {exc}")


@click.group("crypto")
def crypto() -> None:
    """SM2/SM3/SM4: keys, signatures, encryption, hashes."""


@crypto.command("keygen")
@click.option("--purpose", type=click.Choice(["sign", "encrypt"]), required=True)
@click.option("--label", "labels", multiple=True, metavar="NAME=VALUE",
              help="Owner labels, e.g. department=finance system=oa (repeatable).")
@store_option
def keygen_cmd(purpose: str, labels: tuple[str, ...], store_url: str | None) -> None:
    """Create an SM2 key in the keystore; prints its id."""
    with _service(store_url) as svc:
        info = svc.create_key(purpose, _labels(labels))
    click.echo(info.id)


@crypto.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key.")
def list_cmd(as_json: bool) -> None:
    """Keys with purpose, state, versions and labels (no master secret needed)."""
    from crypto_svc.keystore import Keystore

    try:
        keys = Keystore.from_config(load_config()).list()
    except _ERRORS as exc:
        fail(str(exc))
    for info in keys:
        if as_json:
            click.echo(orjson.dumps(info.to_dict()).decode())
        else:
            labels = ",".join(f"{k}={v}" for k, v in info.labels.items())
            click.echo(f"{info.id}  {info.purpose:7}  {info.state:9}  v{info.current}  "
                       f"{info.created}  {labels}".rstrip())


def _admin_command(name: str, method: str, doc: str) -> None:
    @crypto.command(name, help=doc)
    @click.argument("key_id")
    @store_option
    def cmd(key_id: str, store_url: str | None) -> None:
        with _service(store_url) as svc:
            info = getattr(svc, method)(key_id)
        click.echo(f"{info.id} {info.state} v{info.current}")


_admin_command("rotate", "rotate_key", "New version of a key; old versions only verify/decrypt.")
_admin_command("disable", "disable_key", "Stop all private use of a key (reversible: enable).")
_admin_command("enable", "enable_key", "Return a disabled key to use.")


@crypto.command("destroy")
@click.argument("key_id")
@click.option("--yes", is_flag=True, help="Confirm: the key material is erased for good.")
@store_option
def destroy_cmd(key_id: str, yes: bool, store_url: str | None) -> None:
    """Erase a key's material for good; it can never be used again."""
    if not yes:
        fail("destroy erases the key for good; add --yes to confirm")
    with _service(store_url) as svc:
        info = svc.destroy_key(key_id)
    click.echo(f"{info.id} {info.state}")


@crypto.command("export-public")
@click.argument("key_id")
@click.option("--version", type=int, default=None, help="Key version (default: current).")
def export_public_cmd(key_id: str, version: int | None) -> None:
    """The public key as SubjectPublicKeyInfo PEM (what `openssl pkey -pubin` reads)."""
    from crypto_svc.keystore import Keystore

    try:
        pub, _ = Keystore.from_config(load_config()).public_key(key_id, version)
    except _ERRORS as exc:
        fail(str(exc))
    click.echo(pub.to_pem(), nl=False)


@crypto.command("sign")
@click.option("--key", "key_id", required=True, help="Key id (purpose sign).")
@click.option("--id", "user_id", default=None, help="Signer ID for Z_A (default 1234567812345678).")
@click.option("--raw", is_flag=True, help="Raw r||s (64 bytes) instead of DER.")
@click.option("--in", "in_path", required=True, help="Input file, - for stdin.")
@click.option("--out", "out_path", required=True, help="Signature file, - for stdout.")
@store_option
def sign_cmd(key_id: str, user_id: str | None, raw: bool, in_path: str, out_path: str,
             store_url: str | None) -> None:
    """Sign a file with SM2 (streamed: any size)."""
    uid = _uid(user_id)
    with _service(store_url) as svc, _open_in(in_path) as stream:
        signed = svc.sign_stream(key_id, stream, uid=uid, fmt="raw" if raw else "der")
    _write(out_path, signed.signature)


@crypto.command("verify")
@click.option("--key", "key_id", default=None, help="Key id in the keystore.")
@click.option("--pub", "pub_path", default=None, help="Public key PEM file instead of a key id.")
@click.option("--id", "user_id", default=None, help="Signer ID (default 1234567812345678).")
@click.option("--raw", is_flag=True, help="The signature is raw r||s, not DER.")
@click.option("--in", "in_path", required=True, help="Signed file, - for stdin.")
@click.option("--sig", "sig_path", required=True, help="Signature file.")
@store_option
def verify_cmd(key_id: str | None, pub_path: str | None, user_id: str | None, raw: bool,
               in_path: str, sig_path: str, store_url: str | None) -> None:
    """Verify an SM2 signature: exit 0 valid, 1 invalid."""
    if (key_id is None) == (pub_path is None):
        fail("give exactly one of --key ID or --pub PEM")
    if in_path == "-" and sig_path == "-":
        # the signature would take all of stdin and the message none: "invalid", wrongly
        fail("--in and --sig cannot both be - (stdin)")
    uid = _uid(user_id)
    fmt = "raw" if raw else "der"
    signature = _read(sig_path)
    data = _read(in_path)
    if pub_path is not None:
        from crypto_svc.service import CryptoService

        try:
            verdict = CryptoService.verify_with_public(_public_from_file(pub_path), data,
                                                       signature, uid=uid, fmt=fmt)
        except CryptoError as exc:  # e.g. an --id too long for Z_A: a usage error, not
            fail(str(exc))          # "invalid" (exit 1 means the signature is bad)
    else:
        with _service(store_url) as svc:
            verdict = svc.verify(key_id, data, signature, uid=uid, fmt=fmt)
    if verdict.valid:
        where = f" (key {verdict.key_id} v{verdict.version})" if verdict.key_id else ""
        click.echo(f"valid{where}")
        return
    click.echo(f"invalid signature: {verdict.reason}", err=True)
    sys.exit(1)


@crypto.command("encrypt")
@click.option("--key", "key_id", default=None, help="Key id (purpose encrypt).")
@click.option("--pub", "pub_path", default=None, help="Public key PEM file instead of a key id.")
@click.option("--format", "fmt", type=click.Choice(CT_FORMATS), default="der", show_default=True,
              help="GM/T 0009 DER, raw C1C3C2, or legacy C1C2C3.")
@click.option("--envelope", is_flag=True,
              help="For data of any size: SM4-GCM under a fresh key wrapped with SM2 (--key).")
@click.option("--in", "in_path", required=True)
@click.option("--out", "out_path", required=True)
@store_option
def encrypt_cmd(key_id: str | None, pub_path: str | None, fmt: str, envelope: bool,
                in_path: str, out_path: str, store_url: str | None) -> None:
    """SM2 public-key encryption (e.g. to wrap an SM4 key), or an envelope for files."""
    if (key_id is None) == (pub_path is None):
        fail("give exactly one of --key ID or --pub PEM")
    data = _read(in_path)
    if envelope:
        if key_id is None:
            fail("--envelope needs --key ID")
        with _service(store_url) as svc:
            ct = svc.seal(key_id, data)
    elif pub_path is not None:
        try:
            ct = _public_from_file(pub_path).encrypt(data, fmt=fmt)
        except CryptoError as exc:
            fail(str(exc))
    else:
        with _service(store_url) as svc:
            ct, _ = svc.encrypt(key_id, data, fmt=fmt)
    _write(out_path, ct)


@crypto.command("decrypt")
@click.option("--key", "key_id", required=True)
@click.option("--format", "fmt", type=click.Choice(CT_FORMATS), default="der", show_default=True)
@click.option("--envelope", is_flag=True, help="The input was made by encrypt --envelope.")
@click.option("--in", "in_path", required=True)
@click.option("--out", "out_path", required=True)
@store_option
def decrypt_cmd(key_id: str, fmt: str, envelope: bool, in_path: str, out_path: str,
                store_url: str | None) -> None:
    """SM2 decryption with a keystore key (or opening an envelope)."""
    data = _read(in_path)
    with _service(store_url) as svc:
        plaintext = (svc.unseal(key_id, data) if envelope
                     else svc.decrypt(key_id, data, fmt=fmt)[0])
    _write(out_path, plaintext, private=True)


@crypto.command("hash")
@click.option("--in", "in_path", default="-", show_default=True)
def hash_cmd(in_path: str) -> None:
    """SM3 digest (hex) of a file or stdin."""
    from crypto_svc.sm3 import sm3_stream

    with _open_in(in_path) as stream:
        click.echo(sm3_stream(stream).hex())


@crypto.command("hmac")
@click.option("--key-hex", required=True, help="The HMAC key in hex.")
@click.option("--in", "in_path", default="-", show_default=True)
def hmac_cmd(key_hex: str, in_path: str) -> None:
    """HMAC-SM3 (hex) of a file or stdin."""
    from crypto_svc.sm3 import hmac_sm3

    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        fail("--key-hex is not hexadecimal")  # the value itself is a secret: never echoed
    if not key:
        fail("--key-hex must not be empty")
    click.echo(hmac_sm3(key, _read(in_path)).hex())
