"""Operations: /healthz (liveness and what is loaded), /metrics (Prometheus text)."""

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from daah_tf.serve.deps import get_state
from daah_tf.serve.security import require_api_key
from daah_tf.serve.telemetry import CONTENT_TYPE_LATEST

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz(request: Request):
    """{"status": "ok", ...} once the model and the indexes are loaded (503 before)."""
    state = get_state(request)
    return {"status": "ok", **state.describe()}


@router.get("/metrics", dependencies=[Depends(require_api_key)])
async def metrics(request: Request):
    return Response(request.app.state.telemetry.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/info", dependencies=[Depends(require_api_key)])
async def info(state=Depends(get_state)):
    """What the page needs: code length, index sizes, which query kinds the model takes."""
    return state.describe()
