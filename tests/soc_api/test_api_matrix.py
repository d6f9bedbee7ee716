"""Every route × every role against the one permission table: a route missing from the
table fails here, and each role reaches exactly the routes its permissions name."""

from __future__ import annotations

import re

import pytest
from api_helpers import PARAMS, app_routes

from soc_api import roles


def test_every_route_is_in_the_permission_table(api_sqlite):
    routes = app_routes(api_sqlite.client)
    missing = [r for r in routes if r not in roles.ROUTES]
    assert not missing, f"routes without a permission: {missing}"
    stale = [r for r in roles.ROUTES if r not in routes]
    assert not stale, f"permissions for routes that do not exist: {stale}"


def test_route_by_role_matrix(api_sqlite):
    api = api_sqlite
    routes = app_routes(api.client)
    headers = {role: api.token(role) for role in roles.ROLES}
    api.cfg.values["console"] = {"live_max_seconds": 0}  # the live queue's stream: ends
    wrong = []
    for method, path in routes:
        perm = roles.ROUTES[(method, path)]
        url = re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], path)
        for role, h in headers.items():
            # POST /auth/logout would end nothing for a token; the others are harmless
            r = api.client.request(method, url, headers=h, json={})
            may = roles.allowed((role,), perm)
            if may and r.status_code in (401, 403) and perm not in (roles.SELF,):
                wrong.append(f"{role} refused {method} {path}: {r.status_code} {r.text[:80]}")
            if not may and r.status_code != 403:
                wrong.append(f"{role} reached {method} {path}: {r.status_code}")
            assert r.status_code < 500, f"{role} {method} {path}: {r.text}"
    assert not wrong, "\n".join(wrong)


def test_no_route_but_health_answers_without_credentials(api_sqlite):
    for method, path in app_routes(api_sqlite.client):
        url = re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], path)
        r = api_sqlite.client.request(method, url, json={})
        if roles.ROUTES[(method, path)] == roles.PUBLIC:
            assert r.status_code != 401, (method, path)
        else:
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.json()["detail"]


@pytest.mark.parametrize("role", sorted(roles.ROLES))
def test_separation_of_duties(role):
    """三权分立: the three administrators hold none of each other's powers."""
    perms = roles.ROLES[role]
    if role == "sysadmin":
        assert not perms & {"events:read", "audit:read", "roles:grant"}
    if role == "auditor":
        assert perms == {"audit:read", "compliance:read"}
    if role == "secadmin":
        assert not perms & {"users:admin", "tokens:admin", "audit:read", "events:read"}
