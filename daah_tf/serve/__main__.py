"""python -m daah_tf.serve --model_dir=DIR [--index=DIR/index] [--host=127.0.0.1] [--port=8080]

Loads the run's SavedModel (the newest version under DIR/saved_model/) and its Hamming indexes
once (building DIR/index from the database split if it is missing), then serves:

    /                         the search page (text -> image grid, dropped image -> captions)
    POST /v1/search/text      {"text": "...", "k": 10, "target": "image"}
    POST /v1/search/image     an image (multipart "file" or raw body); ?k=10&target=text
    POST /v1/search/vector    {"vector": [...], "modality": "image"|"text", "k": 10}
    GET  /v1/thumbnails/ID    a database item's picture (?size=128)
    POST /v1/models/daah:predict   TF Serving's REST predict (encode_* signatures)
    GET  /healthz, /metrics (Prometheus), /docs (OpenAPI)

Binds 127.0.0.1 by default; any other address needs --api_key_file (clients send the key as
the X-API-Key header).
"""

import logging as pylogging

from absl import app, flags, logging

from daah_tf import quiet  # noqa: F401 (before TensorFlow loads: no C++ chatter)

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    define = {"flag_values": flag_values}
    flags.DEFINE_string("model_dir", None, "Run directory written by daah_tf.train.", **define)
    flags.DEFINE_string("index", None, "Index folder (default DIR/index; built if missing).",
                        **define)
    flags.DEFINE_string("host", "127.0.0.1", "Address to bind; non-loopback needs a key.",
                        **define)
    flags.DEFINE_integer("port", 8080, "TCP port (0: any free port).", lower_bound=0,
                         upper_bound=65535, **define)
    flags.DEFINE_string("api_key_file", None, "File holding the API key (one word, >= 16 "
                        "characters) every /v1 request must send as X-API-Key.", **define)
    flags.DEFINE_string("model_name", "daah", "NAME in /v1/models/NAME:predict.", **define)
    flags.DEFINE_enum("backend", "auto", ["auto", "numpy", "faiss"], "HammingIndex backend.",
                      **define)
    flags.DEFINE_bool("build_index", True, "Build the index when the index folder has none.",
                      **define)
    flags.DEFINE_integer("max_batch", 32, "Most queries per SavedModel call.", lower_bound=1,
                         **define)
    flags.DEFINE_float("batch_wait_ms", 1.0, "Longest wait for more queries to batch.",
                       lower_bound=0.0, upper_bound=100.0, **define)
    flags.DEFINE_integer("max_body_mb", 8, "Largest request body (MiB).", lower_bound=1,
                         upper_bound=256, **define)
    flags.mark_flag_as_required("model_dir", flag_values=flag_values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from daah_tf.serve.security import check_bind

    try:
        api_key = check_bind(FLAGS.host, FLAGS.api_key_file)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
        pylogging.getLogger("tensorflow").setLevel(pylogging.ERROR)
    import uvicorn

    from daah_tf.run import RunError
    from daah_tf.serve.app import create_app
    from daah_tf.serve.state import ServeSettings, ServiceState

    settings = ServeSettings(
        model_dir=FLAGS.model_dir, index_dir=FLAGS.index, model_name=FLAGS.model_name,
        backend=FLAGS.backend, build_index=FLAGS.build_index, max_batch=FLAGS.max_batch,
        batch_wait_ms=FLAGS.batch_wait_ms, api_key=api_key,
        max_body_bytes=FLAGS.max_body_mb << 20)
    try:  # load before binding: a bad run directory fails here, with its reason
        state = ServiceState(settings)
    except (RunError, FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    print(f"Serving {state.saved_model_path} ({state.bits} bits, "
          f"{len(state.indexes['image'])} items) on http://{FLAGS.host}:{FLAGS.port}/",
          flush=True)
    uvicorn.run(create_app(settings, state), host=FLAGS.host, port=FLAGS.port,
                log_level="warning", access_log=False, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    define_flags()
    app.run(main)
