"""Configuration we hand to other programs, checked by those programs: the ingress rate limit
by Envoy itself (`envoy --mode validate`), the NATS server config by nats-server (`-t`), and
the PostgreSQL init script and the services' DATABASE_URLs against a real, throwaway
PostgreSQL (when scripts/with-postgres.sh provides one, as scripts/check-deploy.sh arranges)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import deploylib
import pytest
from conftest import target

ENVOY_TARGETS = ["committed", "chart-catalog-only"]
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def _envoy_bootstrap(http_filter: dict) -> dict:
    """A listener like the gateway's: the patched filter ahead of the router."""
    routes = [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]
    connection_manager = {
        "@type": HCM_TYPE,
        "stat_prefix": "gateway",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [http_filter, ROUTER],
    }
    listener = {
        "name": "gateway",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 18080}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": connection_manager}]}
        ],
    }
    return {"static_resources": {"listeners": [listener]}}


def _envoy_validate(http_filter: dict) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bootstrap.json"
        path.write_text(json.dumps(_envoy_bootstrap(http_filter)))
        return deploylib.run(
            [deploylib.tool("envoy"), "--mode", "validate", "-c", str(path), "-l", "error"], check=False
        )


def _http_filter_patches(name: str) -> list[dict]:
    return [
        patch["patch"]["value"]
        for doc in target(name).docs
        if doc.kind == "EnvoyFilter"
        for patch in doc.spec["configPatches"]
        if patch["applyTo"] == "HTTP_FILTER"
    ]


@pytest.mark.parametrize("name", ENVOY_TARGETS)
def test_envoy_accepts_the_gateway_s_filters(name):
    patches = _http_filter_patches(name)
    assert patches
    for value in patches:
        proc = _envoy_validate(value)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_envoy_rejects_what_only_envoy_knows_is_wrong():
    """A bucket refilled every millisecond parses as a proto, but Envoy refuses it."""
    (value,) = [v for v in _http_filter_patches("committed") if v["name"] == "envoy.filters.http.local_ratelimit"]
    value = json.loads(json.dumps(value))
    value["typed_config"]["token_bucket"]["fill_interval"] = "0.001s"
    proc = _envoy_validate(value)
    assert proc.returncode != 0 and "fill" in proc.stdout + proc.stderr


def _nats_conf(name: str) -> str:
    return next(d for d in target(name).docs if d.kind == "ConfigMap" and d.name == "nats").body["data"]["nats.conf"]


def _nats_check(conf: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nats.conf"
        path.write_text(conf)
        return deploylib.run([deploylib.tool("nats-server"), "-t", "-c", str(path)], check=False)


def test_nats_server_accepts_its_config():
    proc = _nats_check(_nats_conf("committed"))
    assert proc.returncode == 0 and "is valid" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_nats_server_rejects_a_misspelt_setting():
    proc = _nats_check(_nats_conf("committed").replace("max_file_store", "max_file_stor"))
    assert proc.returncode != 0 and "max_file_stor" in proc.stdout + proc.stderr


def _init_script() -> str:
    docs = target("committed").docs
    return next(d for d in docs if d.kind == "ConfigMap" and d.name == "postgres-init").body["data"][
        "create-service-databases.sh"
    ]


def test_shellcheck_on_the_postgres_init_script():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "init.sh"
        path.write_text(_init_script())
        proc = deploylib.run([deploylib.tool("shellcheck"), "--shell=sh", str(path)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _secrets() -> dict[str, dict]:
    return {d.name: d.body["stringData"] for d in target("committed").docs if d.kind == "Secret"}


def test_the_database_passwords_agree():
    """The init script gives each role the password its service's DATABASE_URL carries."""
    secrets = _secrets()
    for name in ("catalog", "inventory"):
        url = urlsplit(secrets[f"{name}-database"]["DATABASE_URL"])
        assert (url.username, url.path, url.hostname) == (name, f"/{name}", "postgres")
        assert url.password == secrets["postgres"][f"{name.upper()}_DB_PASSWORD"]


@pytest.mark.skipif(
    "MESHMART_TEST_POSTGRES_URL" not in os.environ, reason="needs PostgreSQL (run under scripts/with-postgres.sh)"
)
def test_the_init_script_creates_databases_the_services_can_migrate():
    """Run the init script as the postgres image's entrypoint would, then connect with each
    service's DATABASE_URL and create a table, as its migrations will."""
    server = urlsplit(os.environ["MESHMART_TEST_POSTGRES_URL"])
    secrets = _secrets()
    env = {
        **os.environ,
        **secrets["postgres"],
        "POSTGRES_USER": server.username or "postgres",
        "PGHOST": server.hostname,
        "PGPORT": str(server.port),
    }
    services = ("catalog", "inventory")
    admin = ["psql", "-v", "ON_ERROR_STOP=1", "-X", "-q", "-d", "postgres"]

    def cleanup():
        for name in services:
            subprocess.run([*admin, "-c", f'DROP DATABASE IF EXISTS "{name}"'], env=env, capture_output=True)
            subprocess.run([*admin, "-c", f'DROP ROLE IF EXISTS "{name}"'], env=env, capture_output=True)

    cleanup()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "init.sh"
            script.write_text(_init_script())
            proc = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for name in services:
            url = urlsplit(secrets[f"{name}-database"]["DATABASE_URL"])
            local = urlunsplit(url._replace(netloc=f"{url.username}:{url.password}@{server.hostname}:{server.port}"))
            probe = "CREATE TABLE migration_probe (id int); SELECT current_user || ' ' || current_database();"
            proc = subprocess.run(
                ["psql", local, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", probe], capture_output=True, text=True
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert proc.stdout.strip().splitlines()[-1] == f"{name} {name}"
    finally:
        cleanup()


# --------------------------------------------------------------------------- the customer header


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gateway_answer(http_filters: list[dict], headers: dict[str, str]) -> str:
    """Runs Envoy with `http_filters` ahead of a route that answers with the customer header as
    the upstream would receive it (every value, comma-joined), and sends one request."""
    import http.client
    import time

    port = _free_port()
    route = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200},
        "response_headers_to_add": [{"header": {"key": "x-seen", "value": "%REQ(x-meshmart-customer-id)%"}}],
    }
    bootstrap = _envoy_bootstrap({})
    listener = bootstrap["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = port
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    manager["route_config"]["virtual_hosts"][0]["routes"] = [route]
    manager["http_filters"] = [*http_filters, ROUTER]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bootstrap.json"
        path.write_text(json.dumps(bootstrap))
        envoy = subprocess.Popen(
            [deploylib.tool("envoy"), "-c", str(path), "-l", "error", "--disable-hot-restart"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    connection.request("POST", "/meshmart.orders.v1.OrderService/ListOrders", headers=headers)
                    response = connection.getresponse()
                    break
                except OSError:
                    assert envoy.poll() is None, envoy.stderr.read() if envoy.stderr else "envoy exited"
                    assert time.monotonic() < deadline, "envoy did not listen within 20s"
                    time.sleep(0.1)
            assert response.status == 200, response.read()
            return response.getheader("x-seen") or ""
        finally:
            envoy.terminate()
            envoy.wait(timeout=10)


def _jwt_filter(claim_name: str | None = None) -> dict:
    """Envoy's jwt_authn as Istio configures it from the chart's RequestAuthentication: the
    demo issuer's inline keys, the customer claim (or `claim_name`) copied to the header."""
    docs = target("committed").docs
    rule = next(d for d in docs if d.kind == "RequestAuthentication").spec["jwtRules"][0]
    (claim,) = rule["outputClaimToHeaders"]
    provider = {
        "issuer": rule["issuer"],
        "audiences": rule["audiences"],
        "local_jwks": {"inline_string": rule["jwks"]},
        "claim_to_headers": [{"header_name": claim["header"], "claim_name": claim_name or claim["claim"]}],
    }
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"demo": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "demo"}}],
        },
    }


def test_an_outside_caller_cannot_name_another_customer():
    """With a token for alice and a forged `x-meshmart-customer-id: bob`, the service sees alice
    only: the gateway's first filter drops every incoming copy, then jwt_authn sets the real
    one. The Envoy here (1.40) also drops a copy of a claim_to_headers header itself, but
    releases whose jwt_authn adds the claim beside an incoming copy (HeaderMap::addCopy) do not,
    and with jwt.enabled false there is no jwt_authn at all: the first filter covers both."""
    token = deploylib.run(["python3", str(deploylib.ROOT / "scripts" / "mint-jwt.py"), "--sub", "alice"]).stdout.strip()
    request = {"authorization": f"Bearer {token}", "x-meshmart-customer-id": "bob", "content-type": "application/grpc"}
    strip = next(v for v in _http_filter_patches("committed") if v["name"] == "meshmart.strip_customer_header")
    assert _gateway_answer([strip, _jwt_filter()], request) == "alice"
    # A token without the claim: no customer at all (the service answers UNAUTHENTICATED).
    assert _gateway_answer([strip, _jwt_filter("customer_id")], request) == ""
    # No JWT filter (jwt.enabled false): nobody is named, where without the strip bob would be.
    assert _gateway_answer([strip], request) == ""
    assert _gateway_answer([], request) == "bob"
