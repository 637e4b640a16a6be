"""Datasets: readers, splits, the text featurizer, the tf.data pipeline, the feature cache."""
