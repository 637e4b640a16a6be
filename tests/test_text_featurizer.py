"""The text featurizer: fitting on training texts only, vocabulary options, scripts written
with and without spaces, tag lists, save/load, and the layer inside graphs (tf.function,
tf.data map in two pipelines)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from daah_tf.config import DataConfig, RunConfig, TrainConfig
from daah_tf.data.base import PairedDataset
from daah_tf.data.text_featurizer import TextFeaturizer
from daah_tf.training.trainer import text_featurizer_for


def column(featurizer, token):
    """The bag-of-words column of `token` (column 0 counts out-of-vocabulary n-grams)."""
    return featurizer.vocabulary.index(token) + 1


def counts(featurizer, text):
    """{token: count} of one text, out-of-vocabulary n-grams under None."""
    row = featurizer.transform([text])[0]
    names = [None, *featurizer.vocabulary]
    return {names[i]: float(row[i]) for i in np.flatnonzero(row)}


def test_vocabulary_comes_from_the_training_split_only(tmp_path):
    texts = np.asarray(["red apple", "green apple", "query only words", "database secret",
                        "red green"], dtype=object)
    data = PairedDataset(
        name="toy", images=np.zeros((5, 4, 4, 3), np.uint8), image_kind="pixels", texts=texts,
        text_kind="raw", labels=np.eye(5, dtype=np.float32), label_names=list("abcde"),
        splits={"query": np.array([2]), "database": np.array([0, 1, 3, 4]),
                "train": np.array([0, 1, 4])},
    )
    config = RunConfig(data=DataConfig(text_vocab_size=100),
                       train=TrainConfig(model_dir=str(tmp_path)))
    featurizer = text_featurizer_for(data, config, resuming=False)
    assert set(featurizer.vocabulary) == {"red", "green", "apple"}
    # Words never seen in training fall into the out-of-vocabulary column.
    assert counts(featurizer, "query only apple") == {None: 2.0, "apple": 1.0}
    # Resuming reads the saved featurizer back instead of fitting again (the run saves it
    # after the run directory's checks: text_featurizer_for itself writes nothing).
    assert not os.path.exists(tmp_path / "text_featurizer.json")
    TextFeaturizer(["saved"]).save(str(tmp_path))
    again = text_featurizer_for(data, config, resuming=True)
    assert again.vocabulary == ["saved"]


def test_vocab_size_keeps_the_most_frequent_with_alphabetical_ties():
    texts = ["a a a b b c", "c d e", "a b"]  # a:4 b:3 c:2 d:1 e:1
    assert TextFeaturizer.fit(texts, vocab_size=3).vocabulary == ["a", "b", "c"]
    assert TextFeaturizer.fit(texts, vocab_size=4).vocabulary == ["a", "b", "c", "d"]
    featurizer = TextFeaturizer.fit(texts, vocab_size=2)
    assert featurizer.dim == 3
    assert featurizer.transform(["a c e"]).shape == (1, 3)


def test_min_count_drops_rare_tokens():
    texts = ["a a a b b c", "c d e", "a b"]
    assert TextFeaturizer.fit(texts, min_count=2).vocabulary == ["a", "b", "c"]
    assert TextFeaturizer.fit(texts, min_count=4).vocabulary == ["a"]
    with pytest.raises(ValueError, match="empty"):
        TextFeaturizer.fit(texts, min_count=5)


def test_ngram_range():
    texts = ["new york city", "new york"]
    unigrams = TextFeaturizer.fit(texts, max_ngram=1)
    assert set(unigrams.vocabulary) == {"new", "york", "city"}
    bigrams = TextFeaturizer.fit(texts, max_ngram=2)
    assert set(bigrams.vocabulary) == {"new", "york", "city", "new york", "york city"}
    assert counts(bigrams, "new york") == {"new": 1.0, "york": 1.0, "new york": 1.0}
    trigrams = TextFeaturizer.fit(texts, max_ngram=3)
    assert "new york city" in trigrams.vocabulary
    assert counts(trigrams, "new york city")["new york city"] == 1.0


def test_comma_separated_tags_split_into_tags():
    featurizer = TextFeaturizer.fit(["dog,beach, Sunset;sea|sky", "dog,cat"])
    assert set(featurizer.vocabulary) == {"dog", "beach", "sunset", "sea", "sky", "cat"}
    assert counts(featurizer, "Cat,DOG,dog") == {"cat": 1.0, "dog": 2.0}


def test_chinese_without_spaces_gives_character_unigrams_and_bigrams():
    texts = ["我爱北京天安门", "北京欢迎你"]
    unigrams = TextFeaturizer.fit(texts)
    assert set(unigrams.vocabulary) == set("我爱北京天安门欢迎你")
    assert unigrams.vocabulary[:2] == ["京", "北"]  # the two characters seen twice, first
    bigrams = TextFeaturizer.fit(texts, max_ngram=2)
    assert {"北 京", "我 爱", "天 安", "欢 迎"} <= set(bigrams.vocabulary)
    assert "门 北" not in bigrams.vocabulary  # n-grams never cross two texts
    assert counts(bigrams, "北京")["北 京"] == 1.0


def test_japanese_mixed_kana_and_kanji_become_characters():
    featurizer = TextFeaturizer.fit(["東京タワーへ行きました"], max_ngram=2)
    vocabulary = set(featurizer.vocabulary)
    assert {"東", "京", "タ", "ワ", "ー", "へ", "行", "き"} <= vocabulary
    assert {"東 京", "タ ワ", "行 き"} <= vocabulary
    assert counts(featurizer, "東京")["東 京"] == 1.0


def test_mixed_scripts_in_one_string():
    featurizer = TextFeaturizer.fit(["Hello Привет МИР 世界, école"], max_ngram=2)
    vocabulary = set(featurizer.vocabulary)
    # Latin and Cyrillic keep whole (lower-cased) words; Han becomes characters.
    assert {"hello", "привет", "мир", "世", "界", "école"} <= vocabulary
    assert {"hello привет", "мир 世", "世 界", "界 école"} <= vocabulary
    assert "世界" not in vocabulary and "Привет" not in vocabulary
    assert counts(featurizer, "ПРИВЕТ hello")["привет"] == 1.0


def test_save_load_round_trip(tmp_path):
    texts = ["dog on the beach 海滩", "Кошка, cat", "東京 tower"]
    featurizer = TextFeaturizer.fit(texts, vocab_size=50, max_ngram=2, output_mode="multi_hot")
    featurizer.save(str(tmp_path))
    loaded = TextFeaturizer.load(str(tmp_path))
    assert loaded.vocabulary == featurizer.vocabulary
    assert (loaded.max_ngram, loaded.output_mode) == (2, "multi_hot")
    probe = [*texts, "unknown words 海", ""]
    np.testing.assert_array_equal(loaded.transform(probe), featurizer.transform(probe))
    assert featurizer.transform(probe).max() == 1.0  # multi_hot


def test_layer_inside_tf_function():
    featurizer = TextFeaturizer.fit(["a b", "b c"])  # the layer is first made inside the graph

    @tf.function
    def vectorize(texts):
        return tf.cast(featurizer.layer(texts), tf.float32) * 2.0

    out = vectorize(tf.constant(["a a", "c"]))
    np.testing.assert_array_equal(out.numpy(), 2.0 * featurizer.transform(["a a", "c"]))


def test_layer_inside_two_tf_data_pipelines():
    # The layer is first asked for inside the first pipeline's map function. Its lookup table
    # once belonged to that graph, and the second pipeline failed ("SymbolicTensor has no
    # attribute _datatype_enum").
    featurizer = TextFeaturizer.fit(["北京 a", "b c"], max_ngram=2)
    texts = ["北京 a", "b", "c a"]
    outs = []
    for _ in range(2):
        pipeline = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(
            lambda batch: featurizer.layer(batch))
        outs.append(np.concatenate(list(pipeline.as_numpy_iterator())))
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], featurizer.transform(texts))  # and eagerly


def test_tf_idf_weights_counts_by_inverse_document_frequency(tmp_path):
    texts = ["red shirt", "blue shirt", "red shoe", "shirt"]
    featurizer = TextFeaturizer.fit(texts, output_mode="tf_idf")
    # idf = log(1 + N / (1 + df)), N = 4 texts.
    expected_idf = {"shirt": np.log1p(4 / 4), "red": np.log1p(4 / 3), "blue": np.log1p(4 / 2)}
    for token, idf in expected_idf.items():
        assert featurizer.idf_weights[featurizer.vocabulary.index(token)] == pytest.approx(idf)
    row = featurizer.transform(["red red shirt"])[0]
    assert row[1 + featurizer.vocabulary.index("red")] == pytest.approx(2 * expected_idf["red"])
    assert row[1 + featurizer.vocabulary.index("shirt")] == pytest.approx(expected_idf["shirt"])
    featurizer.save(str(tmp_path))
    again = TextFeaturizer.load(str(tmp_path))
    np.testing.assert_allclose(again.transform(["red red shirt"])[0], row)
