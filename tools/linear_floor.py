"""The linear floor of a run: ridge regression from the model's input features to the labels,
a random projection of the predicted label scores to q bits, sign (the same projection for both
modalities, so the codes compare across them). Same data, splits and bits as the run; a learned
hashing model should beat it.

    python tools/linear_floor.py --model_dir=runs/wiki_16bit [--alpha=1.0] [--seed=0] \
        [--text_features=run|char_tfidf]

Input features, as the run's model sees them: feature vectors as they are, cached feature maps
averaged over positions, pictures as 32x32 thumbnails (flattened, [0, 1]); texts through the run's
text featurizer (or the dataset's vectors), or with --text_features=char_tfidf raw texts as
character uni+bigram TF-IDF (fitted on the training split) whatever the run used. Each input
column is standardised on the training split before the ridge. Prints the four mAP@all and
writes DIR/linear_floor.json (DIR/linear_floor_char_tfidf.json with char_tfidf).
"""

import json
import os
import sys

import numpy as np
from absl import app, flags
from PIL import Image
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from daah_tf.atomic import atomic_write_text  # noqa: E402
from daah_tf.data.text_featurizer import TextFeaturizer  # noqa: E402
from daah_tf.evaluation.retrieval import chance_map, retrieval_maps  # noqa: E402
from daah_tf.run import LINEAR_FLOOR_FILE, Run  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A run directory of python -m daah_tf.train.")
flags.DEFINE_float("alpha", 1.0, "Ridge regularisation strength.", lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Seed of the random projection.")
flags.DEFINE_enum("text_features", "run", ["run", "char_tfidf"],
                  "Text inputs: the run's own (featurizer or vectors), or character uni+bigram "
                  "TF-IDF of the raw texts fitted on the training split.")
THUMBNAIL = 32


def image_features(data, rows):
    """(n, F) float32 image inputs of the given dataset rows."""
    if data.image_kind == "features":
        features = np.asarray(data.images[rows], np.float32)
        return features.mean(axis=(1, 2)) if features.ndim == 4 else features
    if data.image_kind == "pixels":
        pictures = [Image.fromarray(np.asarray(p, np.uint8)) for p in data.images[rows]]
    else:
        pictures = [Image.open(path).convert("RGB") for path in data.images[rows]]
    return np.stack([np.asarray(p.resize((THUMBNAIL, THUMBNAIL)), np.float32).ravel() / 255.0
                     for p in pictures])


def text_features(data, rows, model_dir):
    """(n, V) float32 text inputs: the run's featurizer on raw text, else the vectors."""
    if data.text_kind == "raw":
        return TextFeaturizer.load(model_dir).transform(data.texts[rows])
    return np.asarray(data.texts[rows], np.float32)


def char_tfidf_featurizer(texts):
    """A function rows' texts -> (n, V) float32 character uni+bigram TF-IDF (lower-cased,
    smoothed idf, l2-normalised rows), fitted on `texts`."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), lowercase=True,
                                 dtype=np.float32).fit([str(t) for t in texts])
    return lambda batch: vectorizer.transform([str(t) for t in batch]).toarray()


def floor_codes(train_x, train_labels, xs, projection, alpha):
    """Ridge (standardised inputs -> labels), then sign(scores @ projection) for each of xs."""
    scaler = StandardScaler().fit(train_x)
    ridge = Ridge(alpha=alpha).fit(scaler.transform(train_x), train_labels)
    return [np.where(ridge.predict(scaler.transform(x)) @ projection >= 0, 1, -1).astype(np.int8)
            for x in xs]


def linear_floor(model_dir, alpha=1.0, seed=0, text_mode="run"):
    """The floor's mAP@all in the four directions (query vs database) and the chance mAP.
    text_mode: "run" (the run's text inputs) or "char_tfidf" (raw texts, char uni+bigrams)."""
    run = Run.open(model_dir)
    config = run.config
    data = run.load_data()
    rows = {name: np.asarray(data.splits[name]) for name in ("train", "query", "database")}
    labels = {name: data.labels[index] for name, index in rows.items()}
    projection = np.random.default_rng(seed).normal(
        size=(labels["train"].shape[1], config.model.bits))
    if text_mode == "char_tfidf":
        if data.text_kind != "raw":
            raise ValueError(f"--text_features=char_tfidf needs raw texts; {data.name} gives "
                             "text vectors")
        char_tfidf = char_tfidf_featurizer(data.texts[rows["train"]])
        featurize_text = lambda r: char_tfidf(data.texts[r])  # noqa: E731
    else:
        featurize_text = lambda r: text_features(data, r, model_dir)  # noqa: E731
    codes = {"query": {}, "database": {}}
    for modality, featurize in (("image", lambda r: image_features(data, r)),
                                ("text", featurize_text)):
        train_x, query_x, database_x = (featurize(rows[n]) for n in ("train", "query", "database"))
        codes["query"][modality], codes["database"][modality] = floor_codes(
            train_x, labels["train"], (query_x, database_x), projection, alpha)
    maps = retrieval_maps(codes["query"], labels["query"], codes["database"], labels["database"])
    results = {f"{name}_map": float(value) for name, value in maps.items()}
    results.update(chance_map=chance_map(labels["query"], labels["database"]),
                   bits=config.model.bits, dataset=data.name, alpha=alpha, seed=seed,
                   text_features=text_mode)
    return results


def main(argv):
    del argv
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required")
    results = linear_floor(FLAGS.model_dir, FLAGS.alpha, FLAGS.seed, FLAGS.text_features)
    suffix = "" if FLAGS.text_features == "run" else f"_{FLAGS.text_features}"
    stem, extension = os.path.splitext(LINEAR_FLOOR_FILE)
    atomic_write_text(os.path.join(FLAGS.model_dir, f"{stem}{suffix}{extension}"),
                      json.dumps(results, indent=2, sort_keys=True))
    print(f"linear floor on {results['dataset']} ({results['bits']} bits, text "
          f"{results['text_features']}): mAP "
          f"I->T {results['i2t_map']:.4f}  T->I {results['t2i_map']:.4f}  "
          f"I->I {results['i2i_map']:.4f}  T->T {results['t2t_map']:.4f}  "
          f"(chance {results['chance_map']:.4f})")


if __name__ == "__main__":
    app.run(main)
