"""The search service: a long-running HTTP API and web page over a run's SavedModel and indexes.

    python -m daah_tf.serve --model_dir=DIR [--index=DIR/index] [--host=127.0.0.1] [--port=8080]

Modules, one concern each:

    model_path   which SavedModel to serve (TF Serving's BASE/<version>/ layout, newest first)
    state        what is loaded once at start: encoder, Hamming indexes, items, thumbnails
    batcher      a micro-batcher: concurrent queries share one SavedModel call
    schemas      request and response bodies (pydantic; the OpenAPI schema comes from them)
    errors       JSON error bodies for every 4xx/5xx
    telemetry    Prometheus metrics (requests, latency, batch sizes, index size)
    security     bind address and API-key rules, request-size limit
    routes_*     one APIRouter per concern: search, thumbnails, TF-Serving predict, ops
    app          create_app(): the FastAPI app with its lifespan
    thumbnails   database pictures as small PNG/JPEG, paths confined to the data folder

FastAPI, uvicorn and prometheus_client come with the ``serve`` extra.
"""
