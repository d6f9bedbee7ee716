"""`govsoc compliance check` and `govsoc report make|verify|list`."""

from __future__ import annotations

import sys

import click
import orjson

from soc_core.cliutil import fail, open_cli_store, store_option
from soc_core.config import ConfigError, load_config

STATUS_MARK = {"pass": "PASS", "fail": "FAIL", "not_applicable": "N/A ",
               "not_evidenced": "NONE"}


def _config():
    try:
        return load_config()
    except ConfigError as exc:
        fail(str(exc))


@click.group("compliance")
def compliance() -> None:
    """等保 2.0 level 3 / 密评 self-assessment from the fleet's and the store's evidence."""


@compliance.command("check")
@click.option("--standard", type=click.Choice(["djcp-l3", "mp"]), default=None,
              help="djcp-l3 (GB/T 22239-2019) or mp (GB/T 39786-2021); default both.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per control.")
@store_option
def check_cmd(standard: str | None, as_json: bool, store_url: str | None) -> None:
    """Judge every control: pass, fail, not applicable or not evidenced, with evidence."""
    from cloud_inventory.compliance import check_compliance, summary

    cfg = _config()
    with open_cli_store(store_url) as store:
        findings = check_compliance(store, cfg, standard=standard)
    if as_json:
        for f in findings:
            sys.stdout.buffer.write(orjson.dumps(f.to_dict(), default=str) + b"\n")
        return
    for f in findings:
        click.echo(f"{STATUS_MARK[f.status]}  {f.clause:40} {f.title}")
        click.echo(f"      {f.summary_zh or f.summary}")
        if f.status in ("fail", "not_evidenced"):
            click.echo(f"      整改: {f.remediation}")
    counts = summary(findings)
    click.echo(" · ".join(f"{k} {v}" for k, v in counts.items()), err=True)


@click.group("report")
def report() -> None:
    """Signed reports (HTML/PDF, SM2 by the platform key) and their verification."""


@report.command("make")
@click.argument("kind", type=click.Choice(["assets", "exposure", "idle", "dr", "compliance",
                                           "weekly"]))
@click.option("--format", "fmt", type=click.Choice(["pdf", "html"]), default="pdf",
              show_default=True)
@click.option("--lang", type=click.Choice(["zh-CN", "en"]), default=None,
              help="Report language (default: config `language`, zh-CN).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the report (default: reports.dir or <data_dir>/reports).")
@store_option
def make_cmd(kind: str, fmt: str, lang: str | None, out_dir: str | None,
             store_url: str | None) -> None:
    """Build, render and sign a report."""
    from cloud_inventory.reports import ReportError, make_report
    from cloud_inventory.signing import DISTID
    from crypto_svc import CryptoError

    cfg = _config()
    lang = lang or str(cfg.get("language", "zh-CN"))
    with open_cli_store(store_url) as store:
        try:
            made = make_report(kind, store, cfg, fmt=fmt, lang=lang, out_dir=out_dir)
        except (ReportError, CryptoError, OSError) as exc:
            fail(str(exc))
    click.echo(f"report:     {made.path}")
    click.echo(f"signature:  {made.signature}  (SM2/SM3, key {made.key_id} v{made.version})")
    click.echo(f"public key: {made.public_key}  (SM3 fingerprint {made.fingerprint})")
    click.echo(f"verify:     openssl dgst -sm3 -sigopt distid:{DISTID} -verify "
               f"{made.public_key} -signature {made.signature} {made.path}")


@report.command("verify")
@click.argument("file", type=click.Path())
@click.argument("sig", type=click.Path())
@click.option("--pubkey", type=click.Path(dir_okay=False), default=None,
              help="SM2 public key (PEM) to check against; default: the platform keys of "
                   "the keystore.")
def verify_cmd(file: str, sig: str, pubkey: str | None) -> None:
    """Check a report's detached SM2 signature. Exit 0 if it verifies, 1 if it does not."""
    from pathlib import Path

    from cloud_inventory.signing import SignatureError, verify_file
    from crypto_svc import CryptoError, Keystore

    try:
        if pubkey:
            result = verify_file(file, sig, public_pem=Path(pubkey).read_bytes())
        else:
            # public parts only: an auditor's machine needs no master secret
            result = verify_file(file, sig, keystore=Keystore.from_config(_config()))
    except OSError as exc:
        fail(f"cannot read {exc.filename}: {exc.strerror}")
    except (SignatureError, CryptoError) as exc:
        fail(str(exc))
    if not result.ok:
        click.echo(f"FAILED: the signature does not match {file} (SM3 {result.sm3})", err=True)
        sys.exit(1)
    who = f"platform key {result.key_id} v{result.version}" if result.key_id else "the given key"
    click.echo(f"verified: {file} signed by {who} (SM2/SM3), key fingerprint "
               f"{result.fingerprint}, SM3 {result.sm3}")


@report.command("list")
@click.option("--kind", default=None)
@store_option
def list_cmd(kind: str | None, store_url: str | None) -> None:
    """Reports made so far (newest first)."""
    from cloud_inventory.reports import list_reports

    with open_cli_store(store_url) as store:
        for r in list_reports(store, kind=kind):
            click.echo(f"{r['created']}  {r['name']}  {r['size']} bytes  key {r['key_id']}")
