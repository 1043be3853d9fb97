"""Optional access control: `--api-key-file` makes the model endpoints ask for `Authorization: Bearer KEY`.

/health, /metrics, the page and the API docs stay open (health checks and scrapers carry no key; the
page itself holds no data, its calls to /v1/ground need the key). Keys are compared in constant time.
With no key file nothing changes.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from fastapi.responses import JSONResponse

PROTECTED = ("/identify", "/v1/ground")


def read_keys(path: str | Path) -> list[bytes]:
    """The keys of a key file: one per line; blank lines and lines starting with # skipped."""
    text = Path(path).read_text(encoding="utf-8")  # FileNotFoundError names the file
    keys = [line.strip().encode() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise ValueError(f"api_key_file: expected at least one key (one per line) in {path}, got none")
    return keys


class ApiKeyGuard:
    """Pure ASGI middleware: 401 in the usual error shape unless a protected path carries a known key."""

    def __init__(self, app, keys: list[bytes]):
        self.app = app
        self.keys = keys

    def allowed(self, headers: list[tuple[bytes, bytes]]) -> bool:
        given = dict(headers).get(b"authorization", b"")
        scheme, _, token = given.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return False
        # every key is compared, so the time taken does not tell which one nearly matched
        return any([hmac.compare_digest(token.strip(), key) for key in self.keys])

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in PROTECTED and not self.allowed(scope.get("headers") or []):
            response = JSONResponse(status_code=401, headers={"WWW-Authenticate": "Bearer"}, content={
                "detail": "authorization: expected the header 'Authorization: Bearer KEY' with a key of "
                          "--api-key-file", "index": None, "field": "authorization"})
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)
