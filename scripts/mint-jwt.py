#!/usr/bin/env python3
"""Mint a JWT for meshmart's demo issuer, to call the shop through the Istio ingress.

The ingress accepts only requests that carry a token signed by the issuer that
RequestAuthentication names (helm/meshmart values `jwt.*`, rendered into
istio/requestauthentication.yaml). For the demo that issuer is this script: its
key pair is below, and the chart's default JWKS is its public half.

    TOKEN=$(python3 scripts/mint-jwt.py)
    grpcurl -plaintext -H "authorization: Bearer $TOKEN" localhost:8080 list

Only the Python standard library is used (RS256 is a modular exponentiation),
so any python3 works. Options: --sub, --ttl SECONDS, --expired, --canary
(the claim meshmart_canary: true, which lets a call pin the canary), --issuer
(a token from an issuer the mesh does not trust), --jwks.

DEMO ONLY: the private key is public. A real cluster sets jwt.issuer and
jwt.jwksUri (or jwt.jwks) to its own identity provider.
"""

import argparse
import base64
import hashlib
import json
import sys
import time

ISSUER = "https://issuer.meshmart.example/demo"
AUDIENCE = "meshmart"
KID = "meshmart-demo-1"

# The demo RSA-2048 key as JWK members (base64url big-endian integers).
N = (
    "8oM2uRrdKTSzV2bHtb-DcynhDozzAAozYZnTt67z0pGkvHw7n0308693HDsM40wa"
    "OHqFTuWq8_wJz2sMtA8zzhA8TF7uhzHUx_-14uOsOlm1AwL0cY2oFJiP_u3YcvMQ"
    "3XQM9gG6_UMzdZkZOoJZhSEKUYTu2Jbd7i8u-vDLBqmJdHB0gle6JnfT---Wpu_l"
    "9q0Q45zlI2sMKKrvIRvI3KI0uBb90iCLfRVBseKjZVctfGzsV9vE9wPDzyFilUOi"
    "kPneERY9eX5Bz3DdBRJvJy5RTw70yDmd-Cuv8oQck--Eov7e2bUCpAXN-nZRw2Xd"
    "TG6GG511zJyNg3fvmauK8Q"
)
E = "AQAB"
D = (
    "cKmT80a9aJK5gOjVxRHaByjwFbZBiemZqF9LtyXpi2v6HqrqRWcs4mTIF2dNNrvk"
    "IJtun7YNjv64kAJmSEAuKpSi30iM3qMcQ8NcXae-gblEvS45R9mJ7OjUoG6Ru99y"
    "gx0C8q0JNCmLu_Tru9Su0UuAgjq87mxG5jn18v-yM3coAWdXF24o7H9y6-X__LIE"
    "C5tBQda5s509TzTOoN5BsNtpQQ7yqaclSOe4cOYIYMbDY51OLf2x3_tBiVR5XgQg"
    "HxZ9MaucCYojeojaz5a8HN6wRIMWOKMODmxCdgln9fTWlOn-GTpkFg0EvfD954cN"
    "Dz6U_beE6ET_A_3B2PGB"
)

# DER prefix of DigestInfo for SHA-256 (RFC 8017, section 9.2, note 1).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def public_jwks() -> dict:
    """The JWKS that RequestAuthentication needs: the public half of the demo key."""
    return {"keys": [{"kty": "RSA", "kid": KID, "alg": "RS256", "use": "sig", "n": N, "e": E}]}


def sign_rs256(message: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017, sections 8.2.1 and 9.2)."""
    n, d = b64url_int(N), b64url_int(D)
    k = (n.bit_length() + 7) // 8
    t = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")


def mint(sub: str, ttl: int, now: int, *, canary: bool = False, issuer: str = ISSUER) -> str:
    header = {"alg": "RS256", "typ": "JWT", "kid": KID}
    claims = {"iss": issuer, "aud": AUDIENCE, "sub": sub, "iat": now, "nbf": now, "exp": now + ttl}
    if canary:
        # The chart's jwt.canaryClaim: the gateway keeps x-meshmart-canary only with it.
        claims["meshmart_canary"] = True
    signing_input = ".".join(b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims))
    return signing_input + "." + b64url(sign_rs256(signing_input.encode("ascii")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sub", default="demo-user", help="subject claim (default: demo-user)")
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default: 3600)")
    parser.add_argument("--expired", action="store_true", help="mint a token that expired an hour ago")
    parser.add_argument(
        "--canary", action="store_true", help="let the call pin the canary (the claim meshmart_canary: true)"
    )
    parser.add_argument(
        "--issuer", default=ISSUER, help="issuer claim (default: the demo issuer; another one is refused)"
    )
    parser.add_argument("--jwks", action="store_true", help="print the public JWKS instead of a token")
    args = parser.parse_args()
    if args.jwks:
        print(json.dumps(public_jwks(), indent=2))
        return 0
    if args.ttl <= 0:
        parser.error("--ttl must be positive")
    now = int(time.time())
    if args.expired:
        now -= 2 * 3600
    print(mint(args.sub, args.ttl, now, canary=args.canary, issuer=args.issuer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
