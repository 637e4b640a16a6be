"""TF Serving's REST API over the same SavedModel: a client written for TF Serving works here.

    POST /v1/models/NAME:predict  {"signature_name": "encode_text", "instances": ["a text"]}
    -> {"predictions": [{"codes": [...], "packed_codes": [...]}]}

Binary inputs (encode_image_bytes) are {"b64": "..."} objects, as in TF Serving.
GET /v1/models/NAME gives the model's status in TF Serving's shape.
"""

import base64
import binascii
import os

import anyio
import numpy as np
from fastapi import APIRouter, Depends, HTTPException

from daah_tf.serve.deps import get_state
from daah_tf.serve.imagecheck import NotAnImage, check_image
from daah_tf.serve.schemas import PredictRequest, PredictResponse
from daah_tf.serve.security import require_api_key

router = APIRouter(prefix="/v1/models", tags=["tf-serving"],
                   dependencies=[Depends(require_api_key)])


def _check_name(state, name):
    if name != state.settings.model_name:
        raise HTTPException(404, f"no model {name!r}; this service serves "
                            f"{state.settings.model_name!r}")


@router.get("/{name}")
async def model_status(name: str, state=Depends(get_state)):
    _check_name(state, name)
    version = os.path.basename(state.saved_model_path)
    return {"model_version_status": [{"version": version if version.isdigit() else "1",
                                      "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


@router.post("/{name}:predict", response_model=PredictResponse)
async def predict(name: str, body: PredictRequest, state=Depends(get_state)):
    _check_name(state, name)
    signatures = state.encoder.signatures
    if body.signature_name not in signatures:
        raise HTTPException(400, f"no signature {body.signature_name!r}; this model has "
                            f"{', '.join(sorted(signatures))}")
    values, dtype = _instances(state, body.signature_name, body.instances)
    signature = signatures[body.signature_name]
    (arg,) = signature.structured_input_signature[1]

    def call():
        import tensorflow as tf

        try:
            outputs = signature(**{arg: tf.constant(values, dtype)})
        except (tf.errors.InvalidArgumentError, ValueError) as error:
            raise HTTPException(400, f"{body.signature_name}: {str(error).splitlines()[0]}"
                                ) from None
        return outputs["codes"].numpy(), outputs["packed_codes"].numpy()

    codes, packed = await anyio.to_thread.run_sync(call)
    return {"predictions": [{"codes": c.tolist(), "packed_codes": p.tolist()}
                            for c, p in zip(codes, packed, strict=True)]}


def _instances(state, signature_name, instances):
    """The instances as a batch for the signature, checked: (values, tf dtype)."""
    import tensorflow as tf

    spec = state.encoder._spec(signature_name)
    if spec.dtype == tf.string:
        if signature_name == "encode_image_bytes":
            return [_b64_image(item, i) for i, item in enumerate(instances)], tf.string
        if not all(isinstance(item, str) and item.strip() for item in instances):
            raise HTTPException(400, f"{signature_name} takes non-empty strings")
        return instances, tf.string
    try:
        values = np.asarray(instances, dtype=np.float32)
    except (ValueError, TypeError):
        raise HTTPException(400, f"{signature_name} takes equal-length lists of numbers"
                            ) from None
    want = tuple(spec.shape[1:])
    if values.shape[1:] != want:
        raise HTTPException(400, f"{signature_name} takes instances of shape {list(want)}, "
                            f"got {list(values.shape[1:])}")
    if not np.isfinite(values).all():
        raise HTTPException(400, "instances hold NaN or Inf")
    return values, tf.float32


def _b64_image(item, position):
    if not isinstance(item, dict) or set(item) != {"b64"} or not isinstance(item["b64"], str):
        raise HTTPException(400, f"instances[{position}]: binary input must be {{\"b64\": ...}}")
    try:
        data = base64.b64decode(item["b64"], validate=True)
        check_image(data)
    except binascii.Error:
        raise HTTPException(400, f"instances[{position}]: not valid base64") from None
    except NotAnImage as error:
        raise HTTPException(415, f"instances[{position}]: {error}") from None
    return data
