"""python -m daah_tf.search build|query --model_dir=DIR ...

    build  --model_dir=DIR [--split=database] [--index=DIR/index] [--dataset=... --data_dir=...]
           Encodes the images AND the texts of a split of the run's dataset through the run's
           SavedModel and stores two Hamming indexes (image codes, text codes), ids = dataset
           rows, plus items.json: what each id shows (its text, its image file, its labels).
    query  --model_dir=DIR (--text="..." | --image=PATH | --vector=v1,v2,...) [--k=10]
           [--target=image|text] [--index=DIR/index]
           Encodes the query through DIR/saved_model (TensorFlow only: encode_text with the raw
           string, encode_image_bytes with the file's bytes) and prints the k nearest items of
           the other modality (text -> image index, image -> text index; --target overrides):
           rank, id, Hamming distance and the item's text or image path.

Datasets given as vectors (Wiki's image features and text topics, MIRFLICKR's tag vectors) have
no raw text or image file to encode: --text / --image are refused there; pass the vector with
--vector (comma-separated floats) and, if both modalities have its length, --vector_modality.

Both sides go through the same SavedModel, so the index and the queries always use the same
weights. Results are sorted by (distance, insertion order); the index holds the split in split
order, so ties go to the lower row. See docs/evaluation_commands.md.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ chatter

import hashlib  # noqa: E402
import json  # noqa: E402
import logging as pylogging  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from daah_tf.atomic import atomic_write_bytes  # noqa: E402
from daah_tf.data.base import DatasetError  # noqa: E402
from daah_tf.data.registry import DATASETS  # noqa: E402
from daah_tf.index import HammingIndex  # noqa: E402
from daah_tf.run import Run, RunError, split_rows  # noqa: E402

FLAGS = flags.FLAGS
COMMANDS = ("build", "query")
MODALITIES = ("image", "text")
ITEMS_FILE = "items.json"
ITEMS_FORMAT_VERSION = 1
_QUERY_FLAGS = ("text", "image", "vector", "vector_modality", "k", "target")
_BUILD_FLAGS = ("dataset", "data_dir", "split")
_SHOWN_CHARS = 100  # longer item texts are cut in the printed hits


class SearchError(RunError):
    """A problem with the query or the index the user can fix: printed, no traceback."""


def define_flags(flag_values=FLAGS):
    """Registers this command's flags (only when the module runs as a program)."""
    define = {"flag_values": flag_values}
    flags.DEFINE_string("model_dir", None, "Run directory written by daah_tf.train.", **define)
    flags.DEFINE_string("index", None, "Index folder (default DIR/index).", **define)
    flags.DEFINE_enum("dataset", None, DATASETS, "build: override the run's dataset.", **define)
    flags.DEFINE_string("data_dir", None, "build: override the run's data folder.", **define)
    flags.DEFINE_string("split", "database", "build: the split to index.", **define)
    flags.DEFINE_string("text", None, "query: a raw text query.", **define)
    flags.DEFINE_string("image", None, "query: an image file (JPEG/PNG/GIF/BMP) as the query.",
                        **define)
    flags.DEFINE_list("vector", None, "query: a feature / bag-of-words vector, comma-separated "
                      "floats (datasets given as vectors).", **define)
    flags.DEFINE_enum("vector_modality", None, MODALITIES,
                      "query: what --vector is (default: the modality whose input has its length).",
                      **define)
    flags.DEFINE_integer("k", 10, "query: number of hits.", lower_bound=1, **define)
    flags.DEFINE_enum("target", None, MODALITIES,
                      "query: the index searched (default: the other modality).", **define)
    flags.DEFINE_enum("backend", "auto", ["auto", "numpy", "faiss"],
                      "HammingIndex backend (auto: faiss when installed).", **define)
    flags.mark_flag_as_required("model_dir", flag_values=flag_values)


# ----------------------------------------------------------------------------------------------
# The SavedModel as an encoder


def served_model(model_dir):
    """The run's newest complete SavedModel version (see daah_tf/saved_model_layout.py)."""
    try:
        return Run(model_dir).saved_model()
    except FileNotFoundError as error:
        raise SearchError(str(error)) from None


class ServingEncoder:
    """The run's SavedModel signatures as NumPy functions returning packed codes.

    Every encode_* method returns uint8 (B, ceil(q / 8)) packed codes (metrics.pack_codes
    layout), straight from the signature's "packed_codes".
    """

    def __init__(self, saved_model_dir):
        import tensorflow as tf

        if not os.path.exists(os.path.join(saved_model_dir, "saved_model.pb")):
            raise SearchError(f"no SavedModel at {saved_model_dir}: the run has not finished "
                                  "training (daah_tf.train exports it at the end)")
        self._tf = tf
        self._loaded = tf.saved_model.load(saved_model_dir)  # keep alive: signatures use it
        self.signatures = self._loaded.signatures
        self.path = saved_model_dir

    def _inputs(self, name):
        """{argument name: TensorSpec} of a signature, {} if the model has no such signature."""
        if name not in self.signatures:
            return {}
        return self.signatures[name].structured_input_signature[1]

    @property
    def takes_raw_text(self):
        return self._spec("encode_text").dtype == self._tf.string

    @property
    def takes_image_files(self):
        return "encode_image_bytes" in self.signatures

    @property
    def bits(self):
        return int(self.signatures["encode_text"].structured_outputs["codes"].shape[-1])

    def vector_dims(self):
        """{modality: d} for the inputs that are plain (B, d) vectors."""
        dims = {}
        for modality, spec in (("image", self._spec("encode_image")),
                               ("text", self._spec(self._text_vector_signature()))):
            if spec.shape.rank == 2:
                dims[modality] = int(spec.shape[1])
        return dims

    def _text_vector_signature(self):
        return "encode_text_bow" if "encode_text_bow" in self.signatures else "encode_text"

    def _spec(self, signature):
        (spec,) = self._inputs(signature).values()
        return spec

    def _call(self, signature, values, dtype):
        (name,) = self._inputs(signature)
        outputs = self.signatures[signature](**{name: self._tf.constant(values, dtype)})
        return outputs["packed_codes"].numpy()

    def encode_texts(self, texts):
        """(B,) raw strings -> packed codes (raw-text models)."""
        return self._call("encode_text", [str(t) for t in texts], self._tf.string)

    def encode_text_vectors(self, bow):
        """(B, V) float32 bag of words / text features -> packed codes."""
        return self._call(self._text_vector_signature(), np.asarray(bow, np.float32),
                          self._tf.float32)

    def encode_images(self, images):
        """(B, H, W, 3) float32 in [0, 255] (or (B, d) features) -> packed codes. A run trained
        on cached feature maps also takes those maps (B, h, w, c) (its encode_image_features)."""
        images = np.asarray(images, np.float32)
        features = self._inputs("encode_image_features")
        if features and images.shape[1:] == tuple(next(iter(features.values())).shape[1:]):
            return self._call("encode_image_features", images, self._tf.float32)
        return self._call("encode_image", images, self._tf.float32)

    def encode_image_files(self, contents):
        """(B,) encoded JPEG/PNG/GIF/BMP bytes -> packed codes (image models)."""
        return self._call("encode_image_bytes", list(contents), self._tf.string)

    def fingerprint(self):
        """A digest of the export's fingerprint.pb (a new export gets a new one)."""
        path = os.path.join(self.path, "fingerprint.pb")
        if not os.path.exists(path):
            return None
        with open(path, "rb") as stream:
            return hashlib.sha256(stream.read()).hexdigest()


# ----------------------------------------------------------------------------------------------
# build


def index_dir_of(model_dir, index_dir=None):
    return index_dir or Run(model_dir).index_dir


def describe_items(data, rows):
    """What each row shows, JSON-ready: [{"id", "text", "image", "labels"}] (None if absent)."""
    texts = data.texts[rows] if data.text_kind == "raw" else None
    paths = data.images[rows] if data.image_kind == "paths" else None
    items = []
    for position, row in enumerate(rows):
        labels = np.flatnonzero(data.labels[row])
        items.append({
            "id": int(row),
            "text": None if texts is None else str(texts[position]),
            "image": None if paths is None else str(paths[position]),
            "labels": [str(data.label_names[j]) for j in labels],
        })
    return items


def encode_split_served(encoder, run, data, rows):
    """Packed codes {"image", "text"} -> uint8 (n, ceil(q / 8)) of `rows`, in row order, fed
    by the evaluation pipeline (same decoding, resizing and featurizing as training)."""
    images, texts = [], []
    for inputs in run.batches(data, rows):
        images.append(encoder.encode_images(inputs["image"]))
        texts.append(encoder.encode_text_vectors(inputs["text"]))
    return {"image": np.concatenate(images), "text": np.concatenate(texts)}


def write_index(run, encoder, data, split, index_dir, backend="auto"):
    """Encodes a split's images and texts through `encoder` (the run's SavedModel) into
    index_dir/{image,text}.npz, ids = dataset rows, and items.json; returns the rows."""
    rows = split_rows(data, split)
    codes = encode_split_served(encoder, run, data, rows)
    os.makedirs(index_dir, exist_ok=True)
    for modality in MODALITIES:
        index = HammingIndex(encoder.bits, backend)
        index.add(codes[modality], rows)
        index.save(os.path.join(index_dir, f"{modality}.npz"))
    header = {
        "format_version": ITEMS_FORMAT_VERSION, "dataset": data.name, "split": split,
        "bits": encoder.bits, "num_items": len(rows),
        "saved_model_fingerprint": encoder.fingerprint(),
    }
    atomic_write_bytes(os.path.join(index_dir, ITEMS_FILE),
                       items_json(header, describe_items(data, rows)).encode("utf-8"))
    return rows


def build(model_dir, index_dir=None, *, split="database", dataset=None, data_dir=None,
          backend="auto", print_fn=print):
    """Encodes a split's images and texts into DIR/index/{image,text}.npz and items.json."""
    run = Run.open(model_dir)  # before TensorFlow loads: a typo fails at once
    index_dir = index_dir_of(model_dir, index_dir)
    encoder = ServingEncoder(served_model(model_dir))
    data = run.load_data(dataset, data_dir)
    rows = write_index(run, encoder, data, split, index_dir, backend)
    print_fn(f"Indexed {len(rows)} items of {data.name} (split {split}, {encoder.bits} bits) in "
             f"{index_dir}: image.npz (image codes), text.npz (text codes), {ITEMS_FILE}.")
    return index_dir


def items_json(header, items):
    """items.json text: the header's keys, then "items" with one item a line (greppable)."""
    head = json.dumps(header, ensure_ascii=False)[:-1]
    lines = ",\n".join(json.dumps(item, ensure_ascii=False) for item in items)
    return f'{head}, "items": [\n{lines}\n]}}\n'


# ----------------------------------------------------------------------------------------------
# query


def encode_query(encoder, text=None, image=None, vector=None, vector_modality=None):
    """Encodes the one query given: (modality, packed code uint8 (1, ceil(q / 8)), description)."""
    given = [name for name, value in (("--text", text), ("--image", image), ("--vector", vector))
             if value is not None]
    if len(given) != 1:
        raise SearchError("give exactly one query: --text=\"...\", --image=PATH or "
                              f"--vector=v1,v2,... (got {', '.join(given) or 'none'})")
    if text is not None:
        if not encoder.takes_raw_text:
            raise SearchError("this model's texts are vectors (bag of words / features), not "
                                  "raw text: pass --vector with --vector_modality=text")
        return "text", encoder.encode_texts([text]), f"text {text!r}"
    if image is not None:
        if not encoder.takes_image_files:
            raise SearchError("this model's images are feature vectors, not image files: "
                                  "pass --vector with --vector_modality=image")
        if not os.path.isfile(image):
            raise SearchError(f"--image={image}: no such file")
        with open(image, "rb") as stream:
            contents = stream.read()
        import tensorflow as tf

        try:
            return "image", encoder.encode_image_files([contents]), f"image {image}"
        except tf.errors.InvalidArgumentError as error:
            reason = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", error.message).splitlines()[0]
            raise SearchError(f"--image={image} is not a JPEG/PNG/GIF/BMP image: {reason}"
                                  ) from None
    return _encode_vector(encoder, vector, vector_modality)


def _encode_vector(encoder, vector, modality):
    try:
        values = np.asarray([float(v) for v in vector], np.float32)[None]
    except ValueError:
        raise SearchError(f"--vector takes comma-separated floats, got {vector}") from None
    dims = encoder.vector_dims()
    if modality is None:
        matching = [name for name, dim in dims.items() if dim == values.shape[1]]
        if len(matching) != 1:
            raise SearchError(f"--vector has {values.shape[1]} values; vector inputs of this "
                                  f"model: {dims or 'none'}; set --vector_modality=image|text")
        modality = matching[0]
    if dims.get(modality) != values.shape[1]:
        raise SearchError(f"--vector has {values.shape[1]} values, but this model's {modality}"
                              f" vectors have {dims.get(modality, 'no such input')}")
    encode = encoder.encode_images if modality == "image" else encoder.encode_text_vectors
    return modality, encode(values), f"{modality} vector of {values.shape[1]} values"


def load_items(index_dir):
    """items.json of an index folder; SearchError if the index was never built."""
    path = os.path.join(index_dir, ITEMS_FILE)
    if not os.path.exists(path):
        raise SearchError(f"no index in {index_dir}: run python -m daah_tf.search build "
                              "--model_dir=DIR first")
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def item_caption(item, modality):
    """What a hit shows: an image hit its file (else "(its text) ..."), a text hit its text
    (else "(its image) PATH"), else "row N"; labels appended."""
    other = "text" if modality == "image" else "image"
    if item.get(modality):
        shown = item[modality]
    elif item.get(other):  # an image given as pixels is best described by its pair's text
        shown = f"(its {other}) {item[other]}"
    else:
        shown = f"row {item['id']}"
    shown = " ".join(shown.split())  # one line
    if len(shown) > _SHOWN_CHARS:
        shown = shown[:_SHOWN_CHARS - 3] + "..."
    return f"{shown}  [{', '.join(item['labels'])}]" if item.get("labels") else shown


def query(model_dir, index_dir=None, *, text=None, image=None, vector=None, vector_modality=None,
          k=10, target=None, backend="auto", print_fn=print):
    """Prints and returns the k nearest items: [(rank, id, distance, caption)]."""
    Run.open(model_dir)
    index_dir = index_dir_of(model_dir, index_dir)
    items = load_items(index_dir)  # before loading TensorFlow: a missing index fails fast
    encoder = ServingEncoder(served_model(model_dir))
    if items.get("saved_model_fingerprint") not in (None, encoder.fingerprint()):
        logging.warning("%s was built from another export of %s; rebuild it (search build) for "
                        "codes that match the queries.", index_dir, model_dir)
    modality, code, description = encode_query(encoder, text, image, vector, vector_modality)
    target = target or ("image" if modality == "text" else "text")
    index = HammingIndex.load(os.path.join(index_dir, f"{target}.npz"), backend)
    ids, distances = index.search(code, k)
    by_id = {item["id"]: item for item in items["items"]}
    hits = [(rank, int(i), int(d), item_caption(by_id[int(i)], target))
            for rank, (i, d) in enumerate(zip(ids[0], distances[0], strict=True), start=1)]
    print_fn(f"Query: {description} -> {target} index of {items['dataset']} (split "
             f"{items['split']}, {len(index)} items, {index.bits} bits), top {len(hits)}:")
    print_fn(f"{'rank':>4}  {'id':>7}  {'dist':>4}  item")
    for rank, item_id, distance, caption in hits:
        print_fn(f"{rank:>4}  {item_id:>7}  {distance:>4}  {caption}")
    return hits


# ----------------------------------------------------------------------------------------------
# The command


def _check_command(argv):
    """The subcommand (argv[1]); app.UsageError for a missing or unknown one or foreign flags."""
    if len(argv) != 2 or argv[1] not in COMMANDS:
        got = " ".join(argv[1:]) or "nothing"
        raise app.UsageError(f"give one command, build or query (got {got}): python -m "
                             "daah_tf.search build|query --model_dir=DIR ...")
    foreign = _QUERY_FLAGS if argv[1] == "build" else _BUILD_FLAGS
    present = [f"--{name}" for name in foreign if FLAGS[name].present]
    if present:
        raise app.UsageError(f"{', '.join(present)} not used by `{argv[1]}`")
    return argv[1]


def main(argv):
    command = _check_command(argv)
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the hits
        pylogging.getLogger("tensorflow").setLevel(pylogging.ERROR)
    try:
        if command == "build":
            build(FLAGS.model_dir, FLAGS.index, split=FLAGS.split, dataset=FLAGS.dataset,
                  data_dir=FLAGS.data_dir, backend=FLAGS.backend)
        else:
            query(FLAGS.model_dir, FLAGS.index, text=FLAGS.text, image=FLAGS.image,
                  vector=FLAGS.vector, vector_modality=FLAGS.vector_modality, k=FLAGS.k,
                  target=FLAGS.target, backend=FLAGS.backend)
    except (RunError, DatasetError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    define_flags()
    app.run(main)
