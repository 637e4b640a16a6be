"""Who may call the service: the bind address rule, the API key, and the request-size limit."""

import hmac
import ipaddress
import os

from fastapi import HTTPException, Request

MIN_KEY_CHARS = 16


def is_loopback(host):
    """True for 127.0.0.0/8, ::1 and "localhost"; False for 0.0.0.0, :: and real addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def read_api_key(path):
    """The key in `path` (surrounding whitespace stripped); ValueError naming the problem."""
    if not os.path.isfile(path):
        raise ValueError(f"--api_key_file={path}: no such file")
    with open(path, encoding="utf-8") as stream:
        key = stream.read().strip()
    if len(key) < MIN_KEY_CHARS or any(ch.isspace() for ch in key):
        raise ValueError(f"--api_key_file={path}: the key must be one word of at least "
                         f"{MIN_KEY_CHARS} characters")
    return key


def check_bind(host, api_key_file):
    """The API key to enforce (None: none). A non-loopback bind without a key file is refused:
    the service would answer anyone who can reach the port."""
    if api_key_file:
        return read_api_key(api_key_file)
    if not is_loopback(host):
        raise ValueError(f"--host={host} is not a loopback address: serving beyond this machine "
                         "needs --api_key_file=FILE (clients send its key as X-API-Key)")
    return None


def presented_key(request: Request):
    """The key a request carries: X-API-Key, Authorization: Bearer, or ?api_key= (for <img>)."""
    key = request.headers.get("x-api-key")
    if key is None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value:
            key = value.strip()
    return key if key is not None else request.query_params.get("api_key")


def require_api_key(request: Request):
    """Dependency: 401 unless the service has no key or the request presents it."""
    expected = request.app.state.api_key
    if expected is None:
        return
    given = presented_key(request)
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong API key: send it as the X-API-Key header")


class BodyLimit:
    """ASGI middleware: requests whose body exceeds `max_bytes` get 413 (by Content-Length at
    once, else while the body streams in), before any route reads them whole."""

    def __init__(self, app, max_bytes):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await _send_json(send, 413, f"request body over {self.max_bytes} bytes")
        received = 0
        limit = self.max_bytes

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # chunked upload without Content-Length
                    raise HTTPException(413, f"request body over {limit} bytes")
            return message

        return await self.app(scope, limited_receive, send)


async def _send_json(send, status, message):
    import json

    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
