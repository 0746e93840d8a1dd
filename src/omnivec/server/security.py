"""Who may call, how much they may send, and from which web origins: ASGI middleware around the app.

Keys arrive as `X-API-Key`, `Authorization: Bearer` (what OpenAI-style clients send) or, for the web page's <img>
and <video> tags that cannot set headers, a session cookie holding a digest of the key (never the key itself)."""
from __future__ import annotations

import hashlib
import hmac
import json

from .config import ServerConfig

SESSION_COOKIE = "omnivec_session"

# Reachable without a key: the page itself (it holds no data and asks for the key), liveness, the API docs.
PUBLIC_PATHS = {"/", "/health", "/session", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
                "/favicon.ico"}
PUBLIC_PREFIXES = ("/static/",)


def session_token(api_key: str) -> str:
    return hmac.new(api_key.encode(), b"omnivec-session-v1", hashlib.sha256).hexdigest()


def key_matches(presented: str | None, api_key: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), api_key.encode())


async def _send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class ApiKeyMiddleware:
    """Every request outside PUBLIC_PATHS needs the key, when one is configured."""

    def __init__(self, app, api_key: str | None):
        self.app, self.api_key = app, api_key
        self.token = session_token(api_key) if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.api_key is None or _is_public(scope["path"]) \
                or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        presented = headers.get("x-api-key")
        auth = headers.get("authorization", "")
        if presented is None and auth[:7].lower() == "bearer ":
            presented = auth[7:].strip()
        if key_matches(presented, self.api_key) or key_matches(_cookie(headers, SESSION_COOKIE), self.token):
            return await self.app(scope, receive, send)
        await _send_json(send, 401, {"detail": "missing or wrong API key (send X-API-Key or Authorization: Bearer)"},
                         [(b"www-authenticate", b"Bearer")])


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413: from Content-Length before reading, and while streaming for
    chunked bodies (the declared length cannot be trusted, or is absent)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _headers(scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await _send_json(send, 413, {"detail": f"request body of {declared} bytes exceeds the limit of "
                                                          f"{self.max_bytes} bytes"})
        state = {"seen": 0, "refused": False, "started": False}

        async def limited_receive():
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > self.max_bytes:
                    # Answer now; the app sees a disconnect and whatever it tries to send is dropped below.
                    state["refused"] = True
                    if not state["started"]:
                        state["started"] = True
                        await _send_json(send, 413, {"detail": f"request body exceeds the limit of "
                                                               f"{self.max_bytes} bytes"})
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if state["refused"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["refused"]:
                raise  # a real error; after a refusal the app's complaints about the cut body are expected


def add_security(app, config: ServerConfig) -> None:
    """Middleware order, outermost first: CORS (answers preflights, decorates 401s), key, body size."""
    from starlette.middleware.cors import CORSMiddleware

    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_request_bytes)
    app.add_middleware(ApiKeyMiddleware, api_key=config.api_key)
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["Content-Type", "X-API-Key", "Authorization", "Range"],
                           expose_headers=["Content-Range", "Accept-Ranges"])


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookie(headers: dict[str, str], name: str) -> str | None:
    from http.cookies import SimpleCookie

    jar = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is just no cookie
        return None
    return jar[name].value if name in jar else None
