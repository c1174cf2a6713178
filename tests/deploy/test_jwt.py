"""The JWT path, statically: a token from scripts/mint-jwt.py is exactly what the ingress's
RequestAuthentication accepts (signature by its JWKS, issuer, audience) and what the
require-JWT policy lets through; an expired or foreign token is not."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import jwt
import pytest
import yaml
from conftest import target
from cryptography.hazmat.primitives.asymmetric import rsa
from deploylib import CHART, ROOT

MINT = [sys.executable, str(ROOT / "scripts" / "mint-jwt.py")]


def _mint(*args: str) -> str:
    return subprocess.run([*MINT, *args], check=True, capture_output=True, text=True).stdout.strip()


def _rule() -> dict:
    docs = target("committed").docs
    (request_auth,) = [d for d in docs if d.kind == "RequestAuthentication"]
    (rule,) = request_auth.spec["jwtRules"]
    return rule


def _decode(token: str, rule: dict) -> dict:
    keys = {k["kid"]: jwt.PyJWK(k) for k in json.loads(rule["jwks"])["keys"]}
    header = jwt.get_unverified_header(token)
    return jwt.decode(
        token, keys[header["kid"]].key, algorithms=["RS256"], audience=rule["audiences"], issuer=rule["issuer"]
    )


def test_a_minted_token_is_accepted_at_the_ingress():
    rule = _rule()
    claims = _decode(_mint(), rule)
    assert claims["sub"] == "demo-user" and claims["exp"] > time.time()
    # The DENY policy lets through request principals "<issuer>/*": iss/sub of this token.
    docs = target("committed").docs
    (deny,) = [d for d in docs if d.kind == "AuthorizationPolicy" and d.name == "meshmart-require-jwt"]
    (pattern,) = deny.spec["rules"][0]["from"][0]["source"]["notRequestPrincipals"]
    assert f"{claims['iss']}/{claims['sub']}".startswith(pattern.rstrip("*"))


def test_the_deny_policy_covers_every_edge_path():
    docs = target("committed").docs
    (deny,) = [d for d in docs if d.kind == "AuthorizationPolicy" and d.name == "meshmart-require-jwt"]
    guarded = [p.rstrip("*") for p in deny.spec["rules"][0]["to"][0]["operation"]["paths"]]
    edge = next(d for d in docs if d.kind == "VirtualService" and d.name == "meshmart-edge")
    for route in edge.spec["http"]:
        if "directResponse" in route:
            # Answered by the gateway itself (the OpenAPI, the REST paths' first match): no
            # call reaches a service. A REST call that is transcoded is a gRPC path here.
            assert route["name"] in ("openapi", "rest"), route["name"]
            continue
        for match in route["match"]:
            path = match["uri"].get("exact") or match["uri"].get("prefix")
            assert any(path.startswith(g) for g in guarded), f"{path} is reachable without a JWT"


def test_an_expired_token_is_rejected():
    with pytest.raises(jwt.ExpiredSignatureError):
        _decode(_mint("--expired"), _rule())


def test_a_token_from_another_key_is_rejected():
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"iss": _rule()["issuer"], "aud": "meshmart", "sub": "mallory", "exp": int(time.time()) + 60}
    forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": "meshmart-demo-1"})
    with pytest.raises(jwt.InvalidSignatureError):
        _decode(forged, _rule())


def test_the_chart_default_jwks_is_the_mint_script_s_key():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert json.loads(values["jwt"]["jwks"]) == json.loads(_mint("--jwks"))
    assert values["jwt"]["issuer"] == _decode(_mint(), _rule())["iss"]
