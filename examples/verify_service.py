"""A small HTTP service that accepts only agentsess tokens with the right scope.

It verifies tokens offline against the public keys agentsess exports (`agentsess jwks >
jwks.json`), with plain PyJWT: no agentsess code is needed on the service side. (Revocation
needs the agentsess store: on the same machine, call `agentsess.verify_token` instead.)

    agentsess jwks > jwks.json
    python examples/verify_service.py jwks.json --scope github:pr:create --port 8080
    # inside a run:
    curl -H "Authorization: Bearer $AGENTSESS_TOKEN" localhost:8080/
"""

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt


def load_keys(path: str) -> dict:
    with open(path) as fh:
        return {key.key_id: key for key in jwt.PyJWKSet.from_dict(json.load(fh)).keys}


def check(token: str, keys: dict, scope: str) -> tuple[bool, str]:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        if kid not in keys:
            return False, "unknown key"
        claims = jwt.decode(token, key=keys[kid], algorithms=["EdDSA"], issuer="agentsess",
                            options={"require": ["exp", "iat", "nbf", "sub", "sid"]})
    except jwt.InvalidTokenError as exc:
        return False, f"invalid token: {exc}"
    granted = claims.get("scope", "").split()
    if not any(g == scope or (g.endswith(":*") and scope.startswith(g[:-1])) or g == "*" for g in granted):
        return False, f"run {claims['sid']} lacks scope {scope}"
    return True, f"hello {claims['sub']} (run {claims['sid']}, on behalf of {claims.get('obo')})"


def serve(keys: dict, scope: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            auth = self.headers.get("Authorization", "")
            ok, message = check(auth[7:], keys, scope) if auth.startswith("Bearer ") else (False, "no bearer token")
            body = json.dumps({"ok": ok, "message": message}).encode()
            self.send_response(200 if ok else 403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jwks")
    parser.add_argument("--scope", required=True)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    server = serve(load_keys(args.jwks), args.scope, args.port)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
