"""Roles after 三权分立 and the one permission table every route is checked against.

The system, security and audit administrators are kept apart: `sysadmin` runs the
platform (users, tokens, configuration) but reads no events and no audit trail;
`secadmin` decides what is allowed (rules, role and department grants, key lifecycle,
approvals); `auditor` reads the audit trail and compliance evidence and nothing else.

`ROUTES` maps each (method, path template) to the one permission it needs; `PUBLIC` routes
need none, `SELF` routes only an authenticated principal. A route missing from the table is
refused at request time (and fails the route × role test), so adding a route without
deciding who may call it cannot go unnoticed.
"""

from __future__ import annotations

import functools

ROLES: dict[str, frozenset[str]] = {
    "sysadmin": frozenset({"users:admin", "tokens:admin", "config:read", "posture:read",
                           "notify:test"}),
    "secadmin": frozenset({"roles:grant", "rules:read", "rules:write", "crypto:admin",
                           "posture:read", "remediation:approve",
                           "playbooks:read", "assets:read", "assets:write"}),
    "auditor": frozenset({"audit:read", "compliance:read"}),
    "analyst": frozenset({"events:read", "alerts:read", "alerts:write", "posture:read",
                          "rules:read", "playbooks:check", "playbooks:read", "cases:read",
                          "cases:write", "assets:read", "pcap:read", "assets:retire"}),
    "responder": frozenset({"events:read", "alerts:read", "alerts:write", "posture:read",
                            "rules:read", "playbooks:check", "playbooks:run",
                            "playbooks:read", "cases:read", "cases:write",
                            "assets:read", "pcap:read", "assets:write", "assets:retire"}),
    "viewer": frozenset({"posture:read"}),
    "crypto_operator": frozenset({"crypto:use"}),
    "service": frozenset({"crypto:use"}),
}
# packets (issue 18): analysts and responders read (pcap:read) and carve them; only
# responders take carved files off the platform (why: soc_api/routes_packets.py)
ROLES["analyst"] |= {"packets:carve"}
ROLES["responder"] |= {"packets:carve", "files:download"}
# a second factor is required before these roles can act (等保 level 3: administrators)
ADMIN_ROLES = frozenset({"sysadmin", "secadmin", "auditor"})
# roles that only secadmin may put on a token (a sysadmin mints tokens for other systems)
TOKEN_ROLES_FOR_SYSADMIN = frozenset({"service", "viewer"})

PUBLIC = "public"
SELF = "self"  # any authenticated principal, also one that must still change its password

ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("POST", "/auth/login"): PUBLIC,
    ("POST", "/auth/logout"): SELF,
    ("GET", "/auth/me"): SELF,
    ("POST", "/auth/password"): SELF,
    ("POST", "/auth/totp/enroll"): SELF,
    ("POST", "/auth/totp/confirm"): SELF,
    ("GET", "/openapi.json"): SELF,
    # identity administration
    ("GET", "/users"): "users:admin",
    ("POST", "/users"): "users:admin",
    ("GET", "/users/{name}"): "users:admin",
    ("POST", "/users/{name}/disable"): "users:admin",
    ("POST", "/users/{name}/enable"): "users:admin",
    ("POST", "/users/{name}/reset"): "users:admin",
    ("PUT", "/users/{name}/grants"): "roles:grant",
    ("GET", "/tokens"): "tokens:admin",
    ("POST", "/tokens"): "tokens:admin",
    ("DELETE", "/tokens/{token_id}"): "tokens:admin",
    ("GET", "/departments"): "config:read",
    ("GET", "/system/status"): "config:read",
    # the SOC's data
    ("GET", "/events"): "events:read",
    ("GET", "/events/{event_id}"): "events:read",
    ("GET", "/alerts"): "alerts:read",
    ("GET", "/alerts/{alert_id}"): "alerts:read",
    # events and alerts, part 2 (routes_data, routes_alerts)
    ("GET", "/events/histogram"): "events:read",
    ("GET", "/events/fields/{field}/top"): "events:read",
    ("GET", "/alerts/count"): "alerts:read",
    ("GET", "/alerts/aggregate"): "alerts:read",
    ("GET", "/alerts/{alert_id}/history"): "alerts:read",
    ("POST", "/alerts/{alert_id}/transition"): "alerts:write",
    ("POST", "/alerts/{alert_id}/assign"): "alerts:write",
    ("POST", "/alerts/{alert_id}/notes"): "alerts:write",
    ("POST", "/alerts/bulk"): "alerts:write",
    # cases (soc_api/routes_cases.py)
    ("GET", "/cases"): "cases:read",
    ("POST", "/cases"): "cases:write",
    ("GET", "/cases/metrics"): "cases:read",
    ("GET", "/cases/{case_id}"): "cases:read",
    ("PATCH", "/cases/{case_id}"): "cases:write",
    ("POST", "/cases/{case_id}/alerts"): "cases:write",
    ("DELETE", "/cases/{case_id}/alerts/{alert_id}"): "cases:write",
    ("POST", "/cases/{case_id}/merge"): "cases:write",
    ("POST", "/cases/{case_id}/tasks"): "cases:write",
    ("PATCH", "/cases/{case_id}/tasks/{task_id}"): "cases:write",
    ("POST", "/cases/{case_id}/observables"): "cases:write",
    ("GET", "/cases/{case_id}/timeline"): "cases:read",
    ("POST", "/cases/{case_id}/close"): "cases:write",
    # the audit trail
    ("GET", "/audit"): "audit:read",
    ("GET", "/audit/verify"): "audit:read",
    # the crypto service (key grants are checked per request on top)
    ("POST", "/crypto/sign"): "crypto:use",
    ("POST", "/crypto/verify"): "crypto:use",
    ("POST", "/crypto/encrypt"): "crypto:use",
    ("POST", "/crypto/decrypt"): "crypto:use",
    ("POST", "/crypto/hash"): "crypto:use",
    ("POST", "/crypto/hmac"): "crypto:use",
    ("GET", "/crypto/keys"): "crypto:use",
    ("GET", "/crypto/keys/{key_id}"): "crypto:use",
    ("POST", "/crypto/keys"): "crypto:admin",
    ("POST", "/crypto/keys/{key_id}/rotate"): "crypto:admin",
    ("POST", "/crypto/keys/{key_id}/disable"): "crypto:admin",
    ("POST", "/crypto/keys/{key_id}/enable"): "crypto:admin",
    ("POST", "/crypto/keys/{key_id}/destroy"): "crypto:admin",
    # posture (soc_api/routes_posture.py)
    ("GET", "/posture"): "posture:read",
    ("GET", "/posture/trend"): "posture:read",
    ("GET", "/posture/tactics"): "posture:read",
    ("GET", "/posture/health"): "posture:read",
    # notifications (soc_api/routes_notify.py): channels are platform configuration
    ("GET", "/notifications/channels"): "config:read",
    ("POST", "/notifications/test/{channel}"): "notify:test",
    # playbook runs (soc_api/routes_runs.py); who may cancel is checked in the route too
    ("GET", "/playbooks"): "playbooks:read",
    ("POST", "/runs"): "playbooks:check",
    ("GET", "/runs"): "playbooks:read",
    ("GET", "/runs/{run_id}"): "playbooks:read",
    ("POST", "/runs/{run_id}/approve"): "remediation:approve",
    ("POST", "/runs/{run_id}/reject"): "remediation:approve",
    ("POST", "/runs/{run_id}/cancel"): "playbooks:read",
    ("POST", "/runs/{run_id}/undo"): "playbooks:run",
    ("GET", "/runs/{run_id}/events"): "playbooks:read",
    # rules and detection state (soc_api/routes_rules.py): tuning blinds detection, so
    # every change is the security administrator's (rules:write)
    ("GET", "/rules"): "rules:read",
    ("GET", "/rules/{rule_id}"): "rules:read",
    ("POST", "/rules/{rule_id}/enable"): "rules:write",
    ("POST", "/rules/{rule_id}/disable"): "rules:write",
    ("GET", "/rules/{rule_id}/exceptions"): "rules:read",
    ("POST", "/rules/{rule_id}/exceptions"): "rules:write",
    ("DELETE", "/rules/{rule_id}/exceptions/{exc_id}"): "rules:write",
    ("POST", "/rules/{rule_id}/snooze"): "rules:write",
    ("DELETE", "/rules/{rule_id}/snooze"): "rules:write",
    # signed reports and the compliance self-assessment
    ("GET", "/reports"): "compliance:read",
    ("GET", "/reports/{name}"): "compliance:read",
    ("GET", "/reports/{name}/signature"): "compliance:read",
    ("GET", "/reports/{name}/public-key"): "compliance:read",
    ("GET", "/compliance"): "compliance:read",
    # the analyst console (soc_api/routes_console.py); static files are served outside
    ("GET", "/login"): PUBLIC,
    ("GET", "/ui/prefs"): PUBLIC,
    ("GET", "/"): "posture:read",
    ("GET", "/ui/bigscreen"): "posture:read",
    ("GET", "/ui/overview.json"): "posture:read",
    ("GET", "/ui/alerts"): "alerts:read",
    ("GET", "/ui/alerts/rows"): "alerts:read",
    ("GET", "/ui/alerts/live"): "alerts:read",
    ("GET", "/ui/alerts/{alert_id}"): "alerts:read",
    ("GET", "/ui/events"): "events:read",
    ("GET", "/ui/events/top"): "events:read",
    ("GET", "/ui/cases"): "cases:read",
    ("GET", "/ui/cases/{case_id}"): "cases:read",
    ("GET", "/ui/runs"): "playbooks:read",
    ("GET", "/ui/runs/{run_id}"): "playbooks:read",
    ("GET", "/ui/rules"): "rules:read",
    ("GET", "/ui/rules/{rule_id}"): "rules:read",
    ("GET", "/ui/audit"): "audit:read",
    ("GET", "/ui/users"): "users:admin",
    ("GET", "/ui/reports"): "compliance:read",
    # the asset registry (soc_api/routes_inventory.py, routes_console_assets.py)
    ("GET", "/assets"): "assets:read",
    ("GET", "/assets/changes"): "assets:read",
    ("GET", "/assets/{key}"): "assets:read",
    ("GET", "/exposure"): "assets:read",
    ("GET", "/idle"): "assets:read",
    ("GET", "/ui/assets"): "assets:read",
    ("GET", "/ui/assets/{key}"): "assets:read",
    # packets of flows (soc_api/routes_pcap.py): the full content of connections, for those
    # who investigate alerts (analyst, responder); never the administrators or the auditor
    ("GET", "/pcap"): "pcap:read",
    # registry changes (soc_api/routes_inventory_write.py): annotate is a security decision
    # (secadmin) or incident work (responder); retiring is requested by analyst/responder
    # and approved by a secadmin through the /runs approval
    ("PATCH", "/assets/{key}"): "assets:write",
    ("GET", "/assets/{key}/history"): "assets:read",
    ("POST", "/idle/{key}/retire"): "assets:retire",
    ("GET", "/ui/exposure"): "assets:read",
    ("GET", "/ui/idle"): "assets:read",
    ("GET", "/ui/changes"): "assets:read",
    # the alert queue's saved views (soc_api/routes_views.py): a user's own, shared ones
    # seen by the users of the owner's departments
    ("GET", "/views"): "alerts:read",
    ("POST", "/views"): "alerts:read",
    ("DELETE", "/views/{view_id}"): "alerts:read",
    ("PUT", "/views/default"): "alerts:read",
}

# a flow's or alert's packets (soc_api/routes_packets.py, routes_console_packets.py)
ROUTES.update({
    ("GET", "/packets/flows/{event_id}"): "pcap:read",
    ("GET", "/packets/alerts/{alert_id}"): "pcap:read",
    ("GET", "/packets/flows/{event_id}/follow"): "pcap:read",
    ("GET", "/packets/alerts/{alert_id}/follow"): "pcap:read",
    ("POST", "/packets/flows/{event_id}/carve"): "packets:carve",
    ("POST", "/packets/alerts/{alert_id}/carve"): "packets:carve",
    ("GET", "/packets/files"): "pcap:read",
    ("GET", "/packets/files/{sha256}"): "files:download",
    ("GET", "/ui/alerts/{alert_id}/packets"): "pcap:read",
    ("GET", "/ui/alerts/{alert_id}/packets/{frame}"): "pcap:read",
    ("GET", "/ui/alerts/{alert_id}/follow"): "pcap:read",
    ("GET", "/ui/alerts/{alert_id}/files"): "pcap:read",
})


class RoleError(ValueError):
    """An unknown role or a grant the rules do not allow."""


def check_roles(roles: list[str] | tuple[str, ...]) -> list[str]:
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise RoleError(f"unknown role {unknown[0]!r}; roles: {', '.join(sorted(ROLES))}")
    return sorted(set(roles))


def permissions(roles: list[str] | tuple[str, ...]) -> frozenset[str]:
    return _permissions(tuple(roles))


@functools.lru_cache(maxsize=1024)
def _permissions(roles: tuple[str, ...]) -> frozenset[str]:
    """(Cached: the gate asks on every request, and ROLES is fixed once imported.)"""
    out: set[str] = set()
    for r in roles:
        out |= ROLES.get(r, frozenset())
    return frozenset(out)


def allowed(roles: list[str] | tuple[str, ...], permission: str) -> bool:
    if permission in (PUBLIC, SELF):
        return True
    return permission in permissions(roles)
