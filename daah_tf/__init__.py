"""daah_tf: Attention-aware Deep Adversarial Hashing (ECCV 2018) in TensorFlow 2 / Keras 3."""

import importlib.metadata
import importlib.util

__version__ = "0.1.0"


def _check_tensorflow_install():
    """TensorFlow comes from one of two extras; both wheels install the same `tensorflow`
    folder, so having both gives whichever was installed last, half overwritten."""
    installed = set()
    for distribution in ("tensorflow", "tensorflow-cpu"):
        try:
            importlib.metadata.version(distribution)
            installed.add(distribution)
        except importlib.metadata.PackageNotFoundError:
            pass
    if len(installed) == 2:
        raise ImportError(
            "Both tensorflow and tensorflow-cpu are installed; they overwrite each other. "
            "Uninstall both, then install one: pip install -e '.[cpu]' (CPU only) or "
            "pip install -e '.[cuda]' (NVIDIA GPU)."
        )
    if importlib.util.find_spec("tensorflow") is None:
        raise ImportError(
            "TensorFlow is not installed. Install daah_tf with one extra: "
            "pip install -e '.[cpu]' (CPU only) or pip install -e '.[cuda]' (NVIDIA GPU)."
        )


_check_tensorflow_install()
