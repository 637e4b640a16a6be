"""Search routes: text -> images, image -> texts, vectors, and same-modality search."""

import time

import anyio
import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request

from daah_tf.serve.deps import get_batchers, get_state
from daah_tf.serve.imagecheck import NotAnImage, check_image
from daah_tf.serve.schemas import MAX_K, Hit, Modality, SearchResponse, TextQuery, VectorQuery
from daah_tf.serve.security import require_api_key

router = APIRouter(prefix="/v1/search", tags=["search"], dependencies=[Depends(require_api_key)])
_SHOWN_QUERY_CHARS = 200
_IMAGE_BODY = {"requestBody": {"content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
    "image/*": {"schema": {"type": "string", "format": "binary"}}}}}


@router.post("/text", response_model=SearchResponse)
async def search_text(query: TextQuery, state=Depends(get_state),
                      batchers=Depends(get_batchers)):
    """A raw text -> its k nearest images (target "image", default) or texts."""
    if not state.takes_raw_text:
        raise HTTPException(400, "this model's texts are vectors (bag of words / features), "
                            "not raw text: POST /v1/search/vector with modality=text")
    start = time.perf_counter()
    code = await batchers["text"].submit(query.text)
    shown = query.text if len(query.text) <= _SHOWN_QUERY_CHARS else query.text[:197] + "..."
    return await _respond(state, code, "text", query.target, query.k, shown, start)


@router.post("/image", response_model=SearchResponse, openapi_extra=_IMAGE_BODY)
async def search_image(request: Request, k: int = Query(10, ge=1, le=MAX_K),
                       target: Modality = Query("text"), state=Depends(get_state),
                       batchers=Depends(get_batchers)):
    """An image (multipart field "file", or the raw bytes as the body) -> its k nearest texts
    (target "text", default) or images."""
    if not state.takes_image_files:
        raise HTTPException(400, "this model's images are feature vectors, not image files: "
                            "POST /v1/search/vector with modality=image")
    start = time.perf_counter()
    data, name = await _image_bytes(request)
    try:
        check_image(data)
    except NotAnImage as error:
        raise HTTPException(415, f"{name}: {error}") from None
    code = await batchers["image"].submit(data)
    return await _respond(state, code, "image", target, k, name, start)


@router.post("/vector", response_model=SearchResponse)
async def search_vector(query: VectorQuery, state=Depends(get_state)):
    """A feature / bag-of-words vector (datasets given as vectors)."""
    dims = state.encoder.vector_dims()
    modality = query.modality
    if modality is None:
        matching = [name for name, dim in dims.items() if dim == len(query.vector)]
        if len(matching) != 1:
            raise HTTPException(422, f"vector has {len(query.vector)} values; vector inputs of "
                                f"this model: {dims or 'none'}; set modality")
        modality = matching[0]
    if dims.get(modality) != len(query.vector):
        raise HTTPException(422, f"vector has {len(query.vector)} values, but this model's "
                            f"{modality} vectors have {dims.get(modality, 'no such input')}")
    values = np.asarray(query.vector, np.float32)[None]
    if not np.isfinite(values).all():
        raise HTTPException(422, "vector holds NaN or Inf")
    start = time.perf_counter()
    encode = (state.encoder.encode_images if modality == "image"
              else state.encoder.encode_text_vectors)
    code = (await anyio.to_thread.run_sync(encode, values))[0]
    target = query.target or ("image" if modality == "text" else "text")
    return await _respond(state, code, modality, target, query.k,
                          f"{modality} vector of {len(query.vector)} values", start)


async def _image_bytes(request: Request):
    """(bytes, a name for messages) of an upload: multipart "file" or the raw body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, "multipart body has no file field named \"file\"")
        return await upload.read(), upload.filename or "upload"
    return await request.body(), "body"


async def _respond(state, code, modality, target, k, shown, start):
    found = await anyio.to_thread.run_sync(state.search, code, target, k)
    hits = []
    for rank, (item_id, distance) in enumerate(found, start=1):
        item = state.items.get(item_id, {})
        image = item.get("image")
        hits.append(Hit(rank=rank, id=item_id, distance=distance, text=item.get("text"),
                        image=image.rsplit("/", 1)[-1] if image else None,
                        labels=item.get("labels", []),
                        thumbnail=(f"/v1/thumbnails/{item_id}" if state.thumbnails.available
                                   else None)))
    return SearchResponse(query=shown, query_modality=modality, target=target, bits=state.bits,
                          index_items=len(state.indexes[target]),
                          took_ms=round(1000 * (time.perf_counter() - start), 3), hits=hits)
