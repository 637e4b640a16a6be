"""JSON error bodies: every error the service returns is {"error": "<what is wrong>", ...}.

FastAPI's own 422 body ({"detail": [...]}) is kept under "detail", and "error" names the field
and the problem in one line, e.g. "body.k: Input should be less than or equal to 100".
"""

import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

LOG = logging.getLogger("daah_tf.serve")


def error_response(status, message, **extra):
    return JSONResponse({"error": message, **extra}, status_code=status)


def validation_message(errors):
    """One line from pydantic's error list: 'body.text: String should have ...; query.k: ...'."""
    parts = []
    for error in errors[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI):
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError):
        detail = [{key: value for key, value in item.items() if key in ("loc", "msg", "type")}
                  for item in error.errors()]
        return error_response(422, validation_message(detail), detail=detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException):
        message = error.detail if isinstance(error.detail, str) else str(error.detail)
        if error.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(error.status_code, message)

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception):
        LOG.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(error).__name__}")


__all__ = ["HTTPException", "error_response", "install_error_handlers", "validation_message"]
