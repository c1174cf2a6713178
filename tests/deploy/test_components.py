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
    return _envoy_run_validate(_envoy_bootstrap(http_filter))


def _envoy_run_validate(bootstrap: dict) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bootstrap.json"
        path.write_text(json.dumps(bootstrap))
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


def _patches(name: str, apply_to: str, *, envoy_filter: str = "") -> list[dict]:
    """The configPatches of the target's EnvoyFilters (or of one of them) that apply to `apply_to`."""
    return [
        patch
        for doc in target(name).docs
        if doc.kind == "EnvoyFilter" and envoy_filter in ("", doc.name)
        for patch in doc.spec["configPatches"]
        if patch["applyTo"] == apply_to
    ]


# A release on a shared gateway, which names its hosts (the rate limit is on by default).
SHARED_GATEWAY = ("ingress.gateway.create=false", "ingress.hosts[0]=shop.example.com")


def _ratelimit(name: str = "committed", sets: tuple[str, ...] = ()) -> tuple[dict, dict[str, dict]]:
    """The rate limit's HTTP filter, and its per-virtual-host configs by vhost name, in a
    target's rendering or in the laptop's with `sets`."""
    docs = target(name).docs
    if sets:
        docs = deploylib.split_stream(deploylib.helm_template(sets=sets).stdout, "helm template")
    (envoy_filter,) = [d for d in docs if d.kind == "EnvoyFilter" and d.name.endswith("ratelimit")]
    patches = envoy_filter.spec["configPatches"]
    (http_filter,) = [p["patch"]["value"] for p in patches if p["applyTo"] == "HTTP_FILTER"]
    vhosts = {
        p["match"]["routeConfiguration"]["vhost"]["name"]: p["patch"]["value"]
        for p in patches
        if p["applyTo"] == "VIRTUAL_HOST"
    }
    return json.loads(json.dumps(http_filter)), json.loads(json.dumps(vhosts))


def _vhost(name: str, domains: list[str], patch: dict | None = None, routes: list[dict] | None = None) -> dict:
    """A virtual host as Istio's gateway builds it for a Gateway host (<host>:<port>, domains
    host and host:*, or only * for *), with an EnvoyFilter's MERGE patch applied."""
    routes = routes or [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]
    vhost = {"name": name, "domains": domains, "routes": routes}
    return {**vhost, **(patch or {})}


def test_envoy_accepts_the_rate_limit_on_our_virtual_hosts():
    """The rate limit is on this release's virtual hosts (one per Gateway host, named
    <host>:<port> as Istio names them), not on the listener: Envoy loads the filter and the
    per-host buckets together."""
    http_filter, vhosts = _ratelimit()
    assert set(vhosts) == {"*:80"}, "the release's own gateway: every host on it is ours"
    assert set(_ratelimit(sets=SHARED_GATEWAY)[1]) == {"shop.example.com:80"}
    assert "token_bucket" not in http_filter["typed_config"], "no bucket for the whole listener"
    bootstrap = _envoy_bootstrap(http_filter)
    manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    manager["route_config"]["virtual_hosts"] = [_vhost(name, ["*"], patch) for name, patch in vhosts.items()]
    proc = _envoy_run_validate(bootstrap)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_envoy_rejects_what_only_envoy_knows_is_wrong():
    """A bucket refilled every millisecond parses as a proto, but Envoy refuses it."""
    http_filter, vhosts = _ratelimit()
    patch = vhosts["*:80"]
    for config in patch["typed_per_filter_config"].values():
        config["token_bucket"]["fill_interval"] = "0.001s"
    bootstrap = _envoy_bootstrap(http_filter)
    manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    manager["route_config"]["virtual_hosts"] = [_vhost("*:80", ["*"], patch)]
    proc = _envoy_run_validate(bootstrap)
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
    route = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200},
        "response_headers_to_add": [{"header": {"key": "x-seen", "value": "%REQ(x-meshmart-customer-id)%"}}],
    }
    ((status, answer),) = _gateway_run(http_filters, [_vhost("all", ["*"], routes=[route])], [headers])
    assert status == 200
    return answer.get("x-seen") or ""


def _gateway_run(
    http_filters: list[dict],
    virtual_hosts: list[dict],
    requests: list[dict[str, str]],
    local_reply: dict | None = None,
) -> list[tuple[int, dict[str, str]]]:
    """Runs Envoy with `http_filters` ahead of the router and these virtual hosts, sends each
    request (its headers; Host picks the virtual host; `:method` and `:path`, when given, the
    request line, else a gRPC method's POST) in turn, and returns each answer's status and
    headers (lower-cased names)."""
    import http.client
    import time

    port = _free_port()
    bootstrap = _envoy_bootstrap({})
    listener = bootstrap["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = port
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    manager["route_config"]["virtual_hosts"] = virtual_hosts
    manager["http_filters"] = [*http_filters, ROUTER]
    if local_reply is not None:
        manager["local_reply_config"] = local_reply
    answers = []
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
            for headers in requests:
                headers = dict(headers)
                method = headers.pop(":method", "POST")
                path = headers.pop(":path", "/meshmart.orders.v1.OrderService/ListOrders")
                while True:
                    try:
                        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                        connection.request(method, path, headers=headers)
                        response = connection.getresponse()
                        response.read()
                        connection.close()
                        break
                    except OSError:
                        assert envoy.poll() is None, envoy.stderr.read() if envoy.stderr else "envoy exited"
                        assert time.monotonic() < deadline, "envoy did not listen within 20s"
                        time.sleep(0.1)
                answers.append((response.status, {k.lower(): v for k, v in response.getheaders()}))
            return answers
        finally:
            envoy.terminate()
            envoy.wait(timeout=10)


def _jwt_filter(claim_name: str | None = None) -> dict:
    """Envoy's jwt_authn as Istio configures it from the chart's RequestAuthentication: the
    demo issuer's inline keys, the customer claim (or `claim_name`) copied to the header, the
    payload in the request's metadata under `payload` (Istio's filters.EnvoyJwtFilterPayload),
    and a request without a token let through (the DENY policy refuses those, not jwt_authn)."""
    docs = target("committed").docs
    rule = next(d for d in docs if d.kind == "RequestAuthentication").spec["jwtRules"][0]
    (claim,) = rule["outputClaimToHeaders"]
    provider = {
        "issuer": rule["issuer"],
        "audiences": rule["audiences"],
        "local_jwks": {"inline_string": rule["jwks"]},
        "claim_to_headers": [{"header_name": claim["header"], "claim_name": claim_name or claim["claim"]}],
        "payload_in_metadata": "payload",
    }
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"demo": provider},
            "rules": [
                {
                    "match": {"prefix": "/"},
                    "requires": {"requires_any": {"requirements": [{"provider_name": "demo"}, {"allow_missing": {}}]}},
                }
            ],
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
    strip = next(v for v in _http_filter_patches("committed") if v["name"] == "meshmart.meshmart.strip_customer_header")
    assert _gateway_answer([strip, _jwt_filter()], request) == "alice"
    # A token without the claim: no customer at all (the service answers UNAUTHENTICATED).
    assert _gateway_answer([strip, _jwt_filter("customer_id")], request) == ""
    # No JWT filter (jwt.enabled false): nobody is named, where without the strip bob would be.
    assert _gateway_answer([strip], request) == ""
    assert _gateway_answer([], request) == "bob"


def _mint(*args: str) -> str:
    return deploylib.run(["python3", str(deploylib.ROOT / "scripts" / "mint-jwt.py"), *args]).stdout.strip()


# --------------------------------------------------------------------------- the canary header


def test_only_a_token_that_allows_it_may_pin_the_canary():
    """From outside, x-meshmart-canary pins a call to the canary only with a valid token whose
    payload has meshmart_canary: true. The gateway's Lua filter, just ahead of the router and
    after jwt_authn, drops the header otherwise and clears the route cache, so the call is
    routed as if it had never carried it: here, the pinned route answers v2, the other v1."""
    canary = next(v for v in _http_filter_patches("committed") if v["name"] == "meshmart.meshmart.canary_header")
    (patch,) = _patches("committed", "HTTP_FILTER", envoy_filter="meshmart-canary-header")
    assert patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.router"
    assert patch["patch"]["operation"] == "INSERT_BEFORE"

    def answer(version: str) -> dict:
        return {
            "direct_response": {"status": 200},
            "response_headers_to_add": [{"header": {"key": "x-version", "value": version}}],
        }

    routes = [
        {
            "match": {"prefix": "/", "headers": [{"name": "x-meshmart-canary", "string_match": {"exact": "v2"}}]},
            **answer("v2"),
        },
        {"match": {"prefix": "/"}, **answer("v1")},
    ]
    grpc = {"content-type": "application/grpc", "x-meshmart-canary": "v2"}
    calls = [
        grpc,  # no token
        {**grpc, "authorization": f"Bearer {_mint()}"},  # a token without the claim
        {**grpc, "authorization": f"Bearer {_mint('--canary')}"},  # a token that allows it
        {"content-type": "application/grpc", "authorization": f"Bearer {_mint('--canary')}"},  # no header: weights
    ]
    answers = _gateway_run([_jwt_filter(), canary], [_vhost("all", ["*"], routes=routes)], calls)
    assert [(status, headers.get("x-version")) for status, headers in answers] == [
        (200, "v1"),
        (200, "v1"),
        (200, "v2"),
        (200, "v1"),
    ]
    # Without the filter the header alone would pin it: what the filter is for.
    ((_, headers),) = _gateway_run([_jwt_filter()], [_vhost("all", ["*"], routes=routes)], [calls[0]])
    assert headers.get("x-version") == "v2"


def test_without_jwt_nobody_outside_may_pin_the_canary():
    docs = deploylib.split_stream(deploylib.helm_template(sets=["jwt.enabled=false"]).stdout, "helm")
    (doc,) = [d for d in docs if d.kind == "EnvoyFilter" and d.name == "meshmart-canary-header"]
    source = doc.spec["configPatches"][0]["patch"]["value"]["typed_config"]["default_source_code"]["inline_string"]
    assert 'local claim = ""' in source


# --------------------------------------------------------------------------- the rate limit


def test_the_rate_limit_is_on_our_hosts_only():
    """In Envoy, on a shared gateway: our virtual host's bucket runs dry (RESOURCE_EXHAUSTED,
    x-meshmart-rate-limited) while calls to another app's host on the same gateway are never
    limited by it."""
    http_filter, vhosts = _ratelimit(sets=SHARED_GATEWAY)
    patch = vhosts["shop.example.com:80"]
    for config in patch["typed_per_filter_config"].values():
        config["token_bucket"] = {"max_tokens": 2, "tokens_per_fill": 2, "fill_interval": "60s"}
    hosts = [_vhost("shop.example.com:80", ["shop.example.com", "shop.example.com:*"], patch), _vhost("other", ["*"])]
    ours = {"host": "shop.example.com", "content-type": "application/grpc"}
    theirs = {"host": "other.example.com", "content-type": "application/grpc"}
    answers = _gateway_run([http_filter], hosts, [ours, ours, ours, theirs, theirs, theirs])
    limited = [headers.get("x-meshmart-rate-limited") == "true" for _, headers in answers]
    assert limited == [False, False, True, False, False, False]
    assert answers[2][1].get("grpc-status") == "8", answers[2]  # RESOURCE_EXHAUSTED


def test_two_releases_each_limit_their_own_hosts():
    """Each release's filter has its own name, so its per-host configs never apply to the other's."""
    names = set()
    for release, namespace in (("meshmart", "meshmart"), ("shop2", "shop2")):
        docs = deploylib.split_stream(deploylib.helm_template(release=release, namespace=namespace).stdout, "helm")
        (doc,) = [d for d in docs if d.kind == "EnvoyFilter" and d.name.endswith("-ingress-ratelimit")]
        (http_filter,) = [p["patch"]["value"] for p in doc.spec["configPatches"] if p["applyTo"] == "HTTP_FILTER"]
        for p in doc.spec["configPatches"]:
            if p["applyTo"] == "VIRTUAL_HOST":
                assert set(p["patch"]["value"]["typed_per_filter_config"]) == {http_filter["name"]}
        names.add(http_filter["name"])
    assert len(names) == 2


# --------------------------------------------------------------------------- REST at the edge


def _rest(sets: tuple[str, ...] = ()) -> tuple[dict, dict, dict[str, dict]]:
    """The REST EnvoyFilter's transcoder (HTTP filter), the connection manager's local reply
    config, and the per-virtual-host switches by vhost name."""
    docs = target("committed").docs
    if sets:
        docs = deploylib.split_stream(deploylib.helm_template(sets=sets).stdout, "helm template")
    (doc,) = [d for d in docs if d.kind == "EnvoyFilter" and d.name.endswith("-ingress-rest")]
    patches = json.loads(json.dumps(doc.spec["configPatches"]))
    (http_filter,) = [p["patch"]["value"] for p in patches if p["applyTo"] == "HTTP_FILTER"]
    (manager,) = [p["patch"]["value"]["typed_config"] for p in patches if p["applyTo"] == "NETWORK_FILTER"]
    vhosts = {
        p["match"]["routeConfiguration"]["vhost"]["name"]: p["patch"]["value"]
        for p in patches
        if p["applyTo"] == "VIRTUAL_HOST"
    }
    return http_filter, manager["local_reply_config"], vhosts


def test_the_gateway_s_transcoder_is_the_edge_files():
    """One configuration for both edges: the chart's transcoder is files/edge/'s settings
    (the services this release exposes) with files/edge/meshmart.pb inline, and its local
    replies are files/edge/local-reply.json."""
    import base64

    edge = deploylib.CHART / "files" / "edge"
    http_filter, local_reply, vhosts = _rest()
    assert http_filter["disabled"] is True, "off unless one of our virtual hosts turns it on"
    assert set(http_filter["typed_config"]) == {"@type", "proto_descriptor_bin"}, "a placeholder: no services"
    assert set(vhosts) == {"*:80"}
    (config,) = vhosts["*:80"]["typed_per_filter_config"].values()
    config = dict(config)
    assert base64.b64decode(config.pop("proto_descriptor_bin")) == (edge / "meshmart.pb").read_bytes()
    assert config == json.loads((edge / "grpc-json-transcoder.json").read_text())
    assert local_reply == json.loads((edge / "local-reply.json").read_text())
    assert set(_rest(sets=SHARED_GATEWAY)[2]) == {"shop.example.com:80"}
    docs = deploylib.split_stream(
        deploylib.helm_template(values=[deploylib.CHART / "ci" / "catalog-only-values.yaml"]).stdout, "helm template"
    )
    (doc,) = [d for d in docs if d.kind == "EnvoyFilter" and d.name.endswith("-ingress-rest")]
    (vhost,) = [p["patch"]["value"] for p in doc.spec["configPatches"] if p["applyTo"] == "VIRTUAL_HOST"]
    assert [c["services"] for c in vhost["typed_per_filter_config"].values()] == [["meshmart.catalog.v1.CatalogService"]]


def test_rest_turned_off_leaves_grpc_only():
    docs = deploylib.split_stream(deploylib.helm_template(sets=["ingress.rest.enabled=false"]).stdout, "helm")
    assert not any(d.kind == "EnvoyFilter" and d.name.endswith("-ingress-rest") for d in docs)
    edge = next(d for d in docs if d.kind == "VirtualService" and d.name == "meshmart-edge")
    assert not any("directResponse" in r for r in edge.spec["http"])
    gateway = next(d for d in docs if d.kind == "AuthorizationPolicy" and d.name == "meshmart-gateway")
    assert "/openapi.yaml" not in json.dumps(gateway.spec)


def test_the_transcoder_runs_on_our_hosts_only():
    """In Envoy, on a shared gateway, with the edge VirtualService's REST route: a REST call to
    our host becomes the gRPC call (the gRPC route answers it), the same call to another app's
    host is not transcoded, and the REST route's own 404 is google.rpc.Status JSON."""
    http_filter, local_reply, vhosts = _rest(sets=SHARED_GATEWAY)
    edge = next(
        d
        for d in deploylib.split_stream(deploylib.helm_template(sets=SHARED_GATEWAY).stdout, "helm")
        if d.kind == "VirtualService" and d.name == "meshmart-edge"
    )
    (rest,) = [r for r in edge.spec["http"] if r["name"] == "rest"]
    grpc = {
        "match": {"prefix": "/meshmart.catalog.v1.CatalogService/"},
        "direct_response": {"status": 200},
        "response_headers_to_add": [{"header": {"key": "x-path", "value": "%REQ(:path)%"}}],
    }
    routes = [grpc] + [
        {"match": {"prefix": m["uri"]["prefix"]}, "direct_response": {"status": 404, "body": {"inline_string": "none"}}}
        for m in rest["match"]
    ]
    ours = _vhost("shop.example.com:80", ["shop.example.com"], vhosts["shop.example.com:80"], routes=routes)
    theirs = _vhost("other", ["*"], routes=routes)
    get = {":method": "GET", ":path": "/v1/products/burr-grinder"}
    requests = [{**get, "host": "shop.example.com"}, {**get, "host": "other.example.com"}]
    answers = _gateway_run([http_filter], [ours, theirs], requests, local_reply)
    assert answers[0][0] == 200 and answers[0][1]["x-path"] == "/meshmart.catalog.v1.CatalogService/GetProduct"
    assert answers[1][0] == 404 and answers[1][1]["content-type"] == "application/json"

