"""Property-based requests generated from the API's own OpenAPI schema (schemathesis), as
each role: no 5xx, and every response conforms to the schema. Lean: a few examples per
operation per role (`make fuzz`-style depth belongs to the fuzzing harness)."""

from __future__ import annotations

import pytest
import schemathesis
from api_helpers import Api, make_config
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from soc_api import roles
from soc_api.app import build_context, create_app

EXAMPLES = 4


@pytest.fixture(scope="module")
def api_module(tmp_path_factory):
    import os

    os.environ.setdefault("GOVSOC_MASTER_KEY", "schema-test-master-secret-" + "y" * 12)
    from soc_core.store import open_store

    tmp = tmp_path_factory.mktemp("schema")
    store = open_store(f"sqlite:///{tmp}/govsoc.db")
    cfg = make_config(tmp, store.url)
    ctx = build_context(cfg, store=store)
    app = create_app(cfg, context=ctx)
    yield Api(TestClient(app, base_url="https://testserver"), ctx, cfg)
    ctx.trail.close()
    store.close()


@pytest.fixture(scope="module")
def role_headers(api_module):
    ctx = api_module.ctx
    key = ctx.crypto_service().create_key("sign").id
    out = {}
    for role in roles.ROLES:
        _, secret = ctx.identity.create_token("schema-" + role, roles_=[role],
                                              departments=["*"], keys=[key],
                                              created_by="test")
        out[role] = {"Authorization": f"Bearer {secret}"}
    return out


@pytest.fixture(scope="module")
def schema(api_module):
    spec = api_module.client.app.app.openapi()
    return schemathesis.openapi.from_asgi("/openapi.json", _SpecApp(api_module.client.app,
                                                                     spec))


class _SpecApp:
    """The app, with the schema also served unauthenticated for schemathesis's loader
    only (the real /openapi.json needs a login)."""

    def __init__(self, app, spec):
        self.app, self.spec = app, spec

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/openapi.json" and \
                not any(k == b"authorization" for k, _ in scope["headers"]):
            import orjson

            body = orjson.dumps(self.spec)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def session(schema):
    """One client for every call: schemathesis otherwise makes a requests session for each
    (most of this test's CPU went to the client side), and no proxy settings read from the
    environment on every request."""
    from schemathesis.python.asgi import ASGIClient

    with ASGIClient(schema.app) as client:
        client.trust_env = False
        yield client


lazy = schemathesis.pytest.from_fixture("schema")


def _callers(method: str, path: str) -> list[str]:
    """The roles a generated request is sent as: every role the permission table lets call
    the route, and the first one it refuses (the gate answers 403 before any input is read:
    the route x role test walks every refusal; here one shows the refusal conforms). A method
    the route does not have (the coverage phase tries them) is answered alike for every
    role: one is enough. Sending each request as all eight roles spent most of this test's
    time on 403s."""
    permission = roles.ROUTES.get((method, path))
    if permission is None:
        return [min(roles.ROLES)]
    ok = sorted(r for r in roles.ROLES if roles.allowed([r], permission))
    refused = sorted(set(roles.ROLES) - set(ok))
    return ok + refused[:1]


@lazy.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_error_and_schema_conformance(case, role_headers, session):
    for role in _callers(case.method.upper(), case.operation.path):
        response = case.call(headers=role_headers[role], session=session)
        assert response.status_code < 500, (role, case.method, case.path,
                                            response.text[:300])
        if response.status_code < 300:
            case.validate_response(response)
