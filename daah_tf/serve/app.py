"""create_app(): the FastAPI application of the search service.

The model, the indexes and the batchers are created in the lifespan (once per process) and
reach routes through a dependency (deps.get_state). Pass `state` to reuse one already loaded
(tests build several apps over one run without loading TensorFlow twice).
"""

import contextlib
import os

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from daah_tf.serve import routes_ops, routes_predict, routes_search, routes_thumbnails
from daah_tf.serve.batcher import MicroBatcher
from daah_tf.serve.errors import install_error_handlers
from daah_tf.serve.security import BodyLimit
from daah_tf.serve.state import MODALITIES, ServeSettings, ServiceState
from daah_tf.serve.telemetry import RequestMetrics, Telemetry

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


def create_app(settings: ServeSettings, state: ServiceState | None = None) -> FastAPI:
    telemetry = Telemetry()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service = state or ServiceState(settings)
        batchers = _batchers(service, settings, telemetry)
        for batcher in batchers.values():
            await batcher.start()
        for modality in MODALITIES:
            telemetry.index_items.labels(modality).set(len(service.indexes[modality]))
        telemetry.index_bits.set(service.bits)
        app.state.batchers = batchers
        app.state.service = service
        try:
            yield
        finally:
            app.state.service = None
            for batcher in batchers.values():
                await batcher.stop()

    app = FastAPI(title="daah_tf search", version="1", lifespan=lifespan,
                  description="Cross-modal Hamming search over a DAAH run: text -> images, "
                              "image -> texts, same-modality search.")
    app.state.api_key = settings.api_key
    app.state.telemetry = telemetry
    app.state.service = None
    app.state.batchers = {}
    install_error_handlers(app)
    app.add_middleware(RequestMetrics, telemetry=telemetry)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    for module in (routes_search, routes_thumbnails, routes_predict, routes_ops):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(os.path.join(STATIC_DIR, "index.html"))

    return app


def _batchers(service, settings, telemetry):
    """{"text", "image": MicroBatcher} for the raw-input signatures the model has. They belong
    to the app (its lifespan starts and stops them), not to the shared state."""
    wait = settings.batch_wait_ms / 1000.0
    made = {}
    if service.takes_raw_text:
        made["text"] = MicroBatcher(service.encoder.encode_texts, settings.max_batch, wait,
                                    telemetry.batch_size.labels("encode_text").observe, "text")
    if service.takes_image_files:
        observe = telemetry.batch_size.labels("encode_image_bytes").observe
        made["image"] = MicroBatcher(service.encoder.encode_image_files, settings.max_batch,
                                     wait, observe, "image")
    return made


__all__ = ["ServeSettings", "ServiceState", "create_app"]
