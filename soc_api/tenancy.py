"""Departments (委办局) as tenants in the API: a principal sees the documents of the
departments granted to it ("*": all, including documents no department claims). Another
department's document is answered as not found, and never counted in an aggregate."""

from __future__ import annotations

from typing import Any

from soc_api.identity import Principal
from soc_core import query as q

FIELDS = ("organization.id", "govsoc.departments")  # stamped at ingest


def scope(principal: Principal, user_query: q.Node | None) -> q.Node | None:
    """The user's query restricted to the principal's departments."""
    if principal.all_departments:
        return user_query
    if not principal.departments:
        mine: q.Node = q.Not(q.Exists("event.id"))  # no department: nothing at all
    else:
        mine = q.Or(tuple(q.Term(f, d, True) for f in FIELDS for d in principal.departments))
    return mine if user_query is None else q.And((mine, user_query))


def departments_of(doc: dict[str, Any]) -> set[str]:
    org = doc.get("organization") or {}
    found = {org["id"]} if isinstance(org.get("id"), str) else set()
    extra = (doc.get("govsoc") or {}).get("departments")
    if isinstance(extra, list):
        found.update(d for d in extra if isinstance(d, str))
    elif isinstance(extra, str):
        found.add(extra)
    return found


def visible(principal: Principal, doc: dict[str, Any]) -> bool:
    return principal.all_departments or bool(departments_of(doc) & set(principal.departments))
