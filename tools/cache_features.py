"""Caches the image backbone's feature maps of a whole dataset, for training with a frozen CNN.

    python tools/cache_features.py --dataset=NAME --data_dir=DIR \
        --image_backbone=vgg19|small_cnn --image_weights=imagenet|none|FILE \
        --image_size=224 --out=CACHE_DIR [--batch_size=32]

then train from the cache with

    python -m daah_tf.train --dataset=NAME --data_dir=DIR --feature_cache=CACHE_DIR \
        --image_backbone=precomputed ...

Every row of the dataset (query, database and train) is run once through the backbone, without
augmentation, and stored as float16 in CACHE_DIR/features.npy, written batch by batch; texts,
labels, label names and the reader's splits are stored beside it with a manifest.json. The
folder appears only when complete. Format: docs/feature_cache.md.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ chatter

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from absl import app, flags  # noqa: E402

from daah_tf.data.base import DatasetError  # noqa: E402
from daah_tf.data.registry import DATASETS  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "synthetic", DATASETS, "Which dataset to cache.")
flags.DEFINE_string("data_dir", "", "Folder of the dataset's files (not synthetic).")
flags.DEFINE_enum("image_backbone", "vgg19",
                  ["vgg19", "efficientnet_lite0", "resnet50", "mobilenet_v2", "efficientnet_b0",
                   "small_cnn"], "The backbone to run.")
flags.DEFINE_string("image_weights", "imagenet",
                    "Pretrained backbones: imagenet, none, or a local weights file; "
                    "small_cnn: none.")
flags.DEFINE_list("cnn_filters", ["16", "32", "64"], "small_cnn: filters per conv block.")
flags.DEFINE_bool("cnn_pool_last_block", False,
                  "small_cnn: max-pool after the last conv block too (as the train flag).")
flags.DEFINE_integer("image_size", 224, "Side of the square images fed to the backbone.",
                     lower_bound=16)
flags.DEFINE_string("out", None, "The cache folder to create.")
flags.DEFINE_integer("batch_size", 32, "Images per forward pass.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the reader's random split and of random weights.")
flags.DEFINE_boolean("skip_bad_rows", False, "folder: skip unreadable rows with a warning.")
flags.DEFINE_integer("synthetic_pairs", 3000, "Synthetic dataset: pairs.", lower_bound=100)
flags.DEFINE_integer("synthetic_classes", 8, "Synthetic dataset: labels.", lower_bound=2)
flags.DEFINE_boolean("overwrite", False, "Replace an existing --out folder once the new cache "
                     "is complete.")
flags.mark_flag_as_required("out")


@flags.multi_flags_validator(["dataset", "data_dir"],
                             message="--data_dir is required for every dataset but synthetic")
def _data_dir_given(values):
    return values["dataset"] == "synthetic" or bool(values["data_dir"])


def _progress():
    """A callable(done, total) printing a line about every 10 seconds."""
    started = last = time.time()

    def report(done, total):
        nonlocal last
        now = time.time()
        if now - last >= 10 or done == total:
            last = now
            rate = done / max(now - started, 1e-9)
            print(f"  {done}/{total} images ({rate:.1f}/s)", flush=True)

    return report


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")
    from daah_tf.data.feature_cache import write_feature_cache
    from daah_tf.data.registry import load_dataset
    from daah_tf.models.backbones import build_backbone
    from daah_tf.models.image_encoder import ImageWeightsUnavailableError

    if os.path.exists(FLAGS.out) and not FLAGS.overwrite:
        raise SystemExit(f"error: {FLAGS.out} exists; choose another --out or pass --overwrite")
    try:
        data = load_dataset(FLAGS.dataset, FLAGS.data_dir, seed=FLAGS.seed,
                            skip_bad_rows=FLAGS.skip_bad_rows, num_pairs=FLAGS.synthetic_pairs,
                            num_classes=FLAGS.synthetic_classes, image_size=FLAGS.image_size)
        encoder = build_backbone(FLAGS.image_backbone, FLAGS.image_weights, FLAGS.image_size,
                                 tuple(int(f) for f in FLAGS.cnn_filters), seed=FLAGS.seed,
                                 cnn_pool_last_block=FLAGS.cnn_pool_last_block)
        print(f"Caching {len(data)} images of {data.name} through {FLAGS.image_backbone} at "
              f"{FLAGS.image_size}x{FLAGS.image_size} into {FLAGS.out}", flush=True)
        manifest = write_feature_cache(
            data, FLAGS.out, encoder, FLAGS.image_size, batch_size=FLAGS.batch_size,
            seed=FLAGS.seed, data_dir=FLAGS.data_dir, overwrite=FLAGS.overwrite,
            progress=_progress(),
        )
    except (DatasetError, ValueError, FileExistsError, FileNotFoundError,
            ImageWeightsUnavailableError) as error:
        raise SystemExit(f"error: {error}") from None
    shape = "x".join(str(d) for d in manifest["feature_shape"])
    print(f"Wrote {FLAGS.out}: {manifest['rows']} rows, features {shape} "
          f"{manifest['feature_dtype']}. Train with --feature_cache={FLAGS.out} "
          f"--image_backbone=precomputed --dataset={manifest['dataset']}")


if __name__ == "__main__":
    app.run(main)
