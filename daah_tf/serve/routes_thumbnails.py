"""GET /v1/thumbnails/{item_id}: a database item's picture, resized on the server.

Items are named by their integer id only, never by a path, so a request cannot name a file;
the file an id stands for must still lie inside the data folder (see thumbnails.py).
"""

import anyio
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import Response

from daah_tf.serve.deps import get_state
from daah_tf.serve.security import require_api_key
from daah_tf.serve.thumbnails import MAX_SIZE, ThumbnailError

router = APIRouter(prefix="/v1/thumbnails", tags=["thumbnails"],
                   dependencies=[Depends(require_api_key)])


@router.get("/{item_id}", responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}})
async def thumbnail(item_id: int = Path(ge=0), size: int = Query(128, ge=8, le=MAX_SIZE),
                    state=Depends(get_state)):
    try:
        data, media_type = await anyio.to_thread.run_sync(state.thumbnails.get, item_id, size)
    except ThumbnailError as error:
        raise HTTPException(error.status, str(error)) from None
    return Response(data, media_type=media_type,
                    headers={"Cache-Control": "max-age=3600"})
