"""daah_tf: Attention-aware Deep Adversarial Hashing (ECCV 2018) in TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"
