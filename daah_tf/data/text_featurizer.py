"""Raw text -> bag of words, as a Keras layer that also runs inside the SavedModel graph.

Tokens come from a standardisation that works across scripts: lower case, punctuation and
symbols to spaces (so comma-separated tag lists split into tags), and a space around every
Han, Hiragana and Katakana character, so that text written without spaces between words
(Chinese, Japanese) becomes characters, and the n-gram range turns those into character
n-grams. Latin, Cyrillic, Hangul and other space-separated scripts keep their words. The
vocabulary is counted on the training split only, filtered by a minimum count and cut to the
most frequent `vocab_size` n-grams (ties broken alphabetically, so it is reproducible).
With output_mode "tf_idf" (the default of the training run) each count is weighted by the
n-gram's inverse document frequency on the training split, idf = log(1 + N / (1 + df)), so that
words every caption has weigh little and rare, telling ones weigh much, as in a TF-IDF linear
model.
"""

import collections
import json
import os

import keras
import numpy as np
import tensorflow as tf

from daah_tf.atomic import atomic_write_text
from daah_tf.run import TEXT_FEATURIZER_FILE

# Scripts written without spaces between words: every character becomes a token.
_UNSPACED_SCRIPTS = r"(\p{Han}|\p{Hiragana}|\p{Katakana})"


@keras.saving.register_keras_serializable(package="daah_tf")
def standardize_multiscript(texts):
    """(B,) tf.string -> (B,) tf.string, lower-cased, punctuation-free, CJK characters spaced."""
    texts = tf.strings.lower(texts, encoding="utf-8")
    texts = tf.strings.regex_replace(texts, r"[\p{P}\p{S}]", " ")
    return tf.strings.regex_replace(texts, _UNSPACED_SCRIPTS, r" \1 ")


def _ngrams_per_text(texts, max_ngram):
    """(B,) str -> B lists of the n-grams (n = 1..max_ngram) the layer will look up."""
    tokens = tf.strings.split(standardize_multiscript(tf.constant(texts, tf.string)))
    parts = [tokens] + [tf.strings.ngrams(tokens, n, separator=" ")
                        for n in range(2, max_ngram + 1)]
    rows = [part.to_list() for part in parts]
    return [[g.decode("utf-8") for part in rows for g in part[i]] for i in range(len(texts))]


class TextFeaturizer:
    """Fits a vocabulary on training texts and builds the matching TextVectorization layer.

    Args:
        vocabulary: the n-gram tokens, most frequent first.
        max_ngram: n-grams of 1..max_ngram words (or characters, for unspaced scripts).
        output_mode: "count", "multi_hot" (binary bag of words) or "tf_idf" (counts times
            `idf_weights`).
        idf_weights: for "tf_idf", one weight per vocabulary entry.

    The layer's output has len(vocabulary) + 1 columns: column 0 counts out-of-vocabulary
    n-grams.
    """

    def __init__(self, vocabulary, max_ngram=1, output_mode="count", idf_weights=None):
        if not vocabulary:
            raise ValueError("the text vocabulary is empty: no token reached the minimum count")
        if output_mode == "tf_idf" and (idf_weights is None
                                        or len(idf_weights) != len(vocabulary)):
            raise ValueError("output_mode tf_idf needs one idf weight per vocabulary entry")
        self.idf_weights = None if idf_weights is None else [float(w) for w in idf_weights]
        self.vocabulary = list(vocabulary)
        self.max_ngram = int(max_ngram)
        self.output_mode = output_mode
        self._layer = None

    @classmethod
    def fit(cls, texts, vocab_size=2000, max_ngram=1, min_count=1, output_mode="count",
            batch_size=4096):
        """Counts n-grams over `texts` (the training split only) and keeps the frequent ones."""
        counts = collections.Counter()
        documents = collections.Counter()  # in how many texts each n-gram occurs
        texts = [str(t) for t in texts]
        for start in range(0, len(texts), batch_size):
            for grams in _ngrams_per_text(texts[start:start + batch_size], max_ngram):
                counts.update(grams)
                documents.update(set(grams))
        kept = [(token, n) for token, n in counts.items() if n >= min_count and token.strip()]
        kept.sort(key=lambda item: (-item[1], item[0]))
        vocabulary = [token for token, _ in kept[:vocab_size]]
        idf = None
        if output_mode == "tf_idf":
            idf = [float(np.log1p(len(texts) / (1.0 + documents[t]))) for t in vocabulary]
        return cls(vocabulary, max_ngram, output_mode, idf)

    @property
    def dim(self):
        """V, the bag-of-words size (the vocabulary plus the out-of-vocabulary column)."""
        return len(self.vocabulary) + 1

    @property
    def layer(self):
        """The keras.layers.TextVectorization that maps (B,) strings to (B, V) counts (int64 in
        "count" mode, float32 in "multi_hot"); callers cast to float32."""
        if self._layer is None:
            # Made and built eagerly even when first asked for inside a tf.data or tf.function
            # graph: otherwise its lookup table would belong to that graph and fail in the next.
            with tf.init_scope():
                self._layer = keras.layers.TextVectorization(
                    standardize=standardize_multiscript,
                    split="whitespace",
                    ngrams=self.max_ngram if self.max_ngram > 1 else None,
                    output_mode=self.output_mode,
                    vocabulary=self.vocabulary,
                    idf_weights=self.idf_weights,
                    name="text_featurizer",
                )
                self._layer(tf.constant([""]))
        return self._layer

    def transform(self, texts):
        """(N,) str -> (N, V) float32 NumPy bag of words."""
        return np.asarray(self.layer(tf.constant([str(t) for t in texts])), np.float32)

    def save(self, directory):
        """Writes text_featurizer.json (settings and vocabulary; JSON, no pickle) atomically."""
        atomic_write_text(os.path.join(directory, TEXT_FEATURIZER_FILE), json.dumps(
            {"max_ngram": self.max_ngram, "output_mode": self.output_mode,
             "vocabulary": self.vocabulary, "idf_weights": self.idf_weights},
            ensure_ascii=False))

    @classmethod
    def load(cls, directory):
        with open(os.path.join(directory, TEXT_FEATURIZER_FILE), encoding="utf-8") as handle:
            saved = json.load(handle)
        return cls(saved["vocabulary"], saved["max_ngram"], saved["output_mode"],
                   saved.get("idf_weights"))
