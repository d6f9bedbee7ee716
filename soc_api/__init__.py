"""govsoc soc_api: the HTTPS API — the only door for people and other systems.

    create_app(config)   the ASGI app (FastAPI behind the ASGI guard); `app_from_config`
                         is its uvicorn factory
    ROLES, ROUTES        the roles after 三权分立 and the one permission table of every route
    Identity, Principal  users, tokens and sessions kept in the store's `state` family

The commands are `govsoc api|user|token|audit` (`soc_api.cli`, `soc_api.audit_cli`); the
`govsoc up` service is `soc_api.service:run`.
"""

from soc_core.lazy import lazy_exports

__all__ = ["Identity", "Principal", "ROLES", "ROUTES", "app_from_config", "create_app"]

__getattr__ = lazy_exports("soc_api", {
    "create_app": "app", "app_from_config": "app", "ROLES": "roles", "ROUTES": "roles",
    "Identity": "identity", "Principal": "identity"})
