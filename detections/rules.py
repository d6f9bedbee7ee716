"""Rule packs: load Sigma rules from folders, compile each for both stores, report the rest.

A rule that does not parse, or that a backend cannot convert, is reported as (file, reason)
and skipped for that backend; it never stops the others. Correlation rules reference base
rules by `name` or `id`, across files of all the packs loaded together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaRule

from detections.backends import LuceneStoreBackend, SqliteStoreBackend
from detections.logsources import datasets_for
from detections.pipelines import govsoc_pipeline
from soc_core.regex import regex_problem

OWN_PACK = Path(__file__).resolve().parent / "rules"
BACKENDS = ("sqlite", "elasticsearch")
LEVELS = {"informational": 1, "low": 21, "medium": 47, "high": 73, "critical": 99}
TACTICS = {  # ATT&CK tactic tag -> (id, name)
    "reconnaissance": ("TA0043", "Reconnaissance"),
    "resource-development": ("TA0042", "Resource Development"),
    "initial-access": ("TA0001", "Initial Access"),
    "execution": ("TA0002", "Execution"),
    "persistence": ("TA0003", "Persistence"),
    "privilege-escalation": ("TA0004", "Privilege Escalation"),
    "defense-evasion": ("TA0005", "Defense Evasion"),
    "credential-access": ("TA0006", "Credential Access"),
    "discovery": ("TA0007", "Discovery"),
    "lateral-movement": ("TA0008", "Lateral Movement"),
    "collection": ("TA0009", "Collection"),
    "command-and-control": ("TA0011", "Command and Control"),
    "exfiltration": ("TA0010", "Exfiltration"),
    "impact": ("TA0040", "Impact"),
}
_TECHNIQUE = re.compile(r"^t\d{4}(\.\d{3})?$")


class RuleError(ValueError):
    """A rule pack path the user named is unusable."""


@dataclass
class Rule:
    """One loaded rule with its compiled query per backend (or the reason it has none)."""

    id: str
    title: str
    path: str
    level: str
    sigma: SigmaRule | SigmaCorrelationRule
    datasets: list[str] | None = None  # None: a log source govsoc does not collect
    queries: dict[str, Any] = field(default_factory=dict)  # backend -> native query
    errors: dict[str, str] = field(default_factory=dict)  # backend -> why not converted
    fields: set[str] = field(default_factory=set)
    generate: bool = True  # False: only feeds correlation rules
    options: dict[str, Any] = field(default_factory=dict)  # the rule's `govsoc:` block
    doc: dict[str, Any] | None = None  # the YAML mapping it was loaded from

    @property
    def is_correlation(self) -> bool:
        return isinstance(self.sigma, SigmaCorrelationRule)

    @property
    def severity(self) -> int:
        return LEVELS.get(self.level, 47)

    def threat(self) -> dict[str, Any]:
        """ECS `threat.*` from the rule's ATT&CK tags."""
        techniques, subs, tactics = [], [], []
        for tag in self.sigma.tags:
            if tag.namespace != "attack":
                continue
            name = tag.name.lower()
            if _TECHNIQUE.match(name):
                (subs if "." in name else techniques).append(name.upper())
            elif name in TACTICS:
                tactics.append(TACTICS[name])
        for sub in subs:
            parent = sub.split(".")[0]
            if parent not in techniques:
                techniques.append(parent)
        out: dict[str, Any] = {"framework": "MITRE ATT&CK"}
        if techniques:
            out["technique"] = {"id": techniques}
            if subs:
                out["technique"]["subtechnique"] = {"id": subs}
        if tactics:
            out["tactic"] = {"id": [t[0] for t in tactics], "name": [t[1] for t in tactics]}
        return out


@dataclass
class Skipped:
    path: str
    reason: str
    rule_id: str | None = None
    backend: str | None = None
    line: int | None = None  # where in the file the bad document starts, when known

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass
class RulePack:
    rules: list[Rule]
    skipped: list[Skipped]  # files or documents that did not parse
    # by_id's last answer, for the list it was made of and its length: an engine pass asks
    # for it per correlation and slice, and over SigmaHQ's pack each took milliseconds
    _ids: tuple[int, int, dict[str, Rule]] | None = field(default=None, init=False,
                                                          repr=False, compare=False)

    def by_id(self) -> dict[str, Rule]:
        """Rule id -> rule (a new dict: the caller may change it)."""
        return dict(self._by_id())

    def _by_id(self) -> dict[str, Rule]:
        rules = self.rules
        known = self._ids
        if known is not None and known[0] == id(rules) and known[1] == len(rules) and (
                not rules or known[2].get(rules[-1].id) is rules[-1]):
            return known[2]
        ids = {r.id: r for r in rules}
        self._ids = (id(rules), len(rules), ids)
        return ids

    def runnable(self, backend: str) -> list[Rule]:
        """Rules the engine runs on `backend`: collected log source, converted, and
        either alerting themselves or feeding a correlation."""
        out = []
        ids = self._by_id()
        for r in self.rules:
            if r.is_correlation:
                if all(b.id in ids and backend in ids[b.id].queries for b in self.bases(r)):
                    out.append(r)
            elif backend in r.queries and r.datasets:
                out.append(r)
        return out

    def bases(self, rule: Rule) -> list[Rule]:
        ids = self._by_id()
        return [ids[str(ref.rule.id)] for ref in rule.sigma.rules
                if isinstance(ref.rule, SigmaRule) and str(ref.rule.id) in ids]


# libyaml's parser under the same safe constructor: the same data, a third of a big
# pack's load time saved; PyYAML built without libyaml falls back to the Python one
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def rule_source(rule: Rule) -> str:
    """The YAML of `rule` as written in its file (a file may hold several rules)."""
    text = Path(rule.path).read_text(encoding="utf-8")
    docs = re.split(r"(?m)^---[ \t]*$\n?", text)
    for doc in docs:
        try:
            data = yaml.safe_load(doc)
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and str(data.get("id")) == rule.id:
            return doc.strip("\n") + "\n"
    return text


def rule_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files.extend(sorted(f for f in path.rglob("*") if f.suffix in (".yml", ".yaml")))
        elif path.is_file():
            files.append(path)
        else:
            raise RuleError(f"no such rule file or folder: {path}")
    return files


def load_pack(paths: Iterable[str | Path] | None = None, *,
              backends: Iterable[str] = BACKENDS) -> RulePack:
    """Load and compile every rule under `paths` (default: the project's own pack)."""
    files = rule_files(paths if paths is not None else [OWN_PACK])
    skipped: list[Skipped] = []
    collections: list[SigmaCollection] = []
    raw: dict[int, tuple[str, dict[str, Any]]] = {}
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
            loaded = list(yaml.load_all(text, Loader=_SAFE_LOADER))
        except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
            mark = getattr(exc, "problem_mark", None)
            skipped.append(Skipped(str(f), _one_line(exc), line=mark.line + 1 if mark else None))
            continue
        docs, starts = [], None
        for n, d in enumerate(loaded):
            if d is None:
                continue
            if not isinstance(d, dict):  # a list or a scalar: not a rule, whatever it holds
                starts = starts or _doc_lines(text)
                skipped.append(Skipped(str(f), f"YAML document {n + 1} is a "
                                       f"{type(d).__name__}, not a rule (a mapping)",
                                       line=starts[n]))
                continue
            docs.append((n, d))
        try:
            coll = SigmaCollection.from_dicts([d for _, d in docs], collect_errors=True,
                                              resolve_references=False)
        except Exception:  # pySigma on hostile input can raise anything
            # find the document at fault: the file's other rules still load
            starts = starts or _doc_lines(text)
            kept = []
            for n, d in docs:
                try:
                    SigmaCollection.from_dicts([d], collect_errors=True,
                                               resolve_references=False)
                    kept.append((n, d))
                except Exception as exc:
                    skipped.append(Skipped(str(f), f"{type(exc).__name__}: {_one_line(exc)}",
                                           line=starts[n]))
            docs = kept
            coll = SigmaCollection.from_dicts([d for _, d in docs], collect_errors=True,
                                              resolve_references=False)
        good = []
        for rule, (n, doc) in zip(coll.rules, docs, strict=False):
            problem = None
            if rule.errors:
                problem = _one_line(rule.errors[0])
            elif rule.id is None:
                problem = "rule has no id"
            elif isinstance(rule, SigmaRule):
                problem = _regex_problem(doc.get("detection"))
            if problem:
                starts = starts or _doc_lines(text)
                skipped.append(Skipped(str(f), problem, str(rule.id) if rule.id else None,
                                       line=starts[n]))
                continue
            good.append(rule)
            raw[id(rule)] = (str(f), doc)
        collections.append(SigmaCollection(good, resolve_references=False))
    merged = SigmaCollection.merge(collections, resolve_references=False) if collections \
        else SigmaCollection([])
    try:
        merged.resolve_rule_references()
    except Exception as exc:  # a bad reference, or pySigma tripping over odd input
        # one bad reference must not sink the pack: drop correlations that fail to resolve
        merged = _resolve_each(merged, raw, skipped, exc)

    rules: list[Rule] = []
    seen: set[str] = set()
    # built once per pack (a quarter of the conversion time when built per rule): each
    # conversion applies a new pipeline made from these items, as pySigma's own CLI does
    pipeline = govsoc_pipeline()
    for srule in merged.rules:
        path, doc = raw[id(srule)]
        rid = str(srule.id)
        if rid in seen:
            skipped.append(Skipped(path, f"duplicate rule id {rid}", rid))
            continue
        seen.add(rid)
        opts = srule.custom_attributes.get("govsoc") or {}
        rule = Rule(id=rid, title=srule.title, path=path,
                    level=srule.level.name.lower() if srule.level else "medium",
                    sigma=srule, options=opts if isinstance(opts, dict) else {}, doc=doc)
        if isinstance(srule, SigmaRule):
            rule.datasets = datasets_for(srule.logsource)
            rule.generate = not srule._backreferences or _generate_requested(srule)
            for backend in backends:
                _compile(rule, doc, backend, pipeline)
        rules.append(rule)
    return RulePack(rules, skipped)


def _generate_requested(rule: SigmaRule) -> bool:
    return any(getattr(c, "generate", False) for c in rule._backreferences)


def _resolve_each(merged: SigmaCollection, raw, skipped: list[Skipped], first: Exception
                  ) -> SigmaCollection:
    plain = [r for r in merged.rules if not isinstance(r, SigmaCorrelationRule)]
    keep = SigmaCollection(plain, resolve_references=False)
    for corr in (r for r in merged.rules if isinstance(r, SigmaCorrelationRule)):
        trial = SigmaCollection(plain + [corr], resolve_references=False)
        try:
            trial.resolve_rule_references()
        except Exception as exc:
            skipped.append(Skipped(raw[id(corr)][0], _one_line(exc), str(corr.id)))
            continue
        keep.rules.append(corr)
    try:
        keep.resolve_rule_references()
    except Exception as exc:  # correlations that only fail together: keep the plain rules
        for corr in keep.rules[len(plain):]:
            skipped.append(Skipped(raw[id(corr)][0], _one_line(exc), str(corr.id)))
        keep = SigmaCollection(plain, resolve_references=False)
    return keep


def _compile(rule: Rule, doc: dict[str, Any], backend: str, pipeline: ProcessingPipeline
             ) -> None:
    try:
        # conversion applies the pipeline to the rule in place: use a fresh copy each time
        fresh = SigmaRule.from_dict(doc)
        engine = (SqliteStoreBackend if backend == "sqlite" else LuceneStoreBackend)(pipeline)
        queries = engine.convert_rule(fresh)
        if len(queries) != 1:
            raise SigmaError(f"rule converts to {len(queries)} queries")
        rule.queries[backend] = queries[0]
        rule.fields |= engine.fields_seen
    except Exception as exc:  # pySigma failing on one rule is that rule's error
        rule.errors[backend] = _one_line(exc)


def _doc_lines(text: str) -> list[int]:
    """The first line (1-based) of each YAML document in `text`: read only when one is
    reported, so a clean pack is parsed once."""
    return [node.start_mark.line + 1 if node is not None else 1
            for node in yaml.compose_all(text, Loader=yaml.SafeLoader)]


def _regex_problem(node: Any, key: str = "") -> str | None:
    """Why a `|re` value of a detection cannot run on RE2 (both stores' regex engine)."""
    if isinstance(node, dict):
        for k, v in node.items():
            found = _regex_problem(v, str(k))
            if found:
                return found
        return None
    if isinstance(node, list):
        for v in node:
            found = _regex_problem(v, key)
            if found:
                return found
        return None
    if "re" in key.split("|")[1:] and isinstance(node, str):
        return regex_problem(node)
    return None


def _one_line(exc: Any) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
