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
