"""Raw text -> bag of words, as a Keras layer that also runs inside the SavedModel graph.

Tokens come from a standardisation that works across scripts: lower case, punctuation and
symbols to spaces (so comma-separated tag lists split into tags), and a space around every
Han, Hiragana and Katakana character, so that text written without spaces between words
(Chinese, Japanese) becomes characters, and the n-gram range turns those into character
n-grams. Latin, Cyrillic, Hangul and other space-separated scripts keep their words. The
vocabulary is counted on the training split only, filtered by a minimum count and cut to the
most frequent `vocab_size` n-grams (ties broken alphabetically, so it is reproducible).
"""

import collections
import json
import os

import keras
import numpy as np
import tensorflow as tf

# Scripts written without spaces between words: every character becomes a token.
_UNSPACED_SCRIPTS = r"(\p{Han}|\p{Hiragana}|\p{Katakana})"


@keras.saving.register_keras_serializable(package="daah_tf")
def standardize_multiscript(texts):
    """(B,) tf.string -> (B,) tf.string, lower-cased, punctuation-free, CJK characters spaced."""
    texts = tf.strings.lower(texts, encoding="utf-8")
    texts = tf.strings.regex_replace(texts, r"[\p{P}\p{S}]", " ")
    return tf.strings.regex_replace(texts, _UNSPACED_SCRIPTS, r" \1 ")


def _ngrams(texts, max_ngram):
    """(B,) str -> flat list of the n-grams (n = 1..max_ngram) the layer will look up."""
    tokens = tf.strings.split(standardize_multiscript(tf.constant(texts, tf.string)))
    grams = [tokens.flat_values]
    for n in range(2, max_ngram + 1):
        grams.append(tf.strings.ngrams(tokens, n, separator=" ").flat_values)
    return [g.decode("utf-8") for part in grams for g in part.numpy()]


class TextFeaturizer:
    """Fits a vocabulary on training texts and builds the matching TextVectorization layer.

    Args:
        vocabulary: the n-gram tokens, most frequent first.
        max_ngram: n-grams of 1..max_ngram words (or characters, for unspaced scripts).
        output_mode: "count" or "multi_hot" (binary bag of words).

    The layer's output has len(vocabulary) + 1 columns: column 0 counts out-of-vocabulary
    n-grams.
    """

    def __init__(self, vocabulary, max_ngram=1, output_mode="count"):
        if not vocabulary:
            raise ValueError("the text vocabulary is empty: no token reached the minimum count")
        self.vocabulary = list(vocabulary)
        self.max_ngram = int(max_ngram)
        self.output_mode = output_mode
        self._layer = None

    @classmethod
    def fit(cls, texts, vocab_size=2000, max_ngram=1, min_count=1, output_mode="count",
            batch_size=4096):
        """Counts n-grams over `texts` (the training split only) and keeps the frequent ones."""
        counts = collections.Counter()
        texts = [str(t) for t in texts]
        for start in range(0, len(texts), batch_size):
            counts.update(_ngrams(texts[start:start + batch_size], max_ngram))
        kept = [(token, n) for token, n in counts.items() if n >= min_count and token.strip()]
        kept.sort(key=lambda item: (-item[1], item[0]))
        return cls([token for token, _ in kept[:vocab_size]], max_ngram, output_mode)

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
                    name="text_featurizer",
                )
                self._layer(tf.constant([""]))
        return self._layer

    def transform(self, texts):
        """(N,) str -> (N, V) float32 NumPy bag of words."""
        return np.asarray(self.layer(tf.constant([str(t) for t in texts])), np.float32)

    def save(self, directory):
        """Writes text_featurizer.json (settings and vocabulary; JSON, no pickle) atomically."""
        path = os.path.join(directory, "text_featurizer.json")
        temporary = path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({"max_ngram": self.max_ngram, "output_mode": self.output_mode,
                       "vocabulary": self.vocabulary}, handle, ensure_ascii=False)
        os.replace(temporary, path)

    @classmethod
    def load(cls, directory):
        with open(os.path.join(directory, "text_featurizer.json"), encoding="utf-8") as handle:
            saved = json.load(handle)
        return cls(saved["vocabulary"], saved["max_ngram"], saved["output_mode"])
