"""Dataset names -> readers: the one entry point the commands use (`--dataset`, `--data_dir`)."""

import os

from daah_tf.config import DATASETS
from daah_tf.data.base import DatasetError


def _load_file_dataset(name, data_dir, seed, skip_bad_rows, verify_images):
    # Imported here so that `--dataset=synthetic` never imports h5py / scipy / PIL readers.
    if name == "wiki":
        from daah_tf.data.wiki import load_wiki
        return load_wiki(data_dir)
    if name == "mirflickr25k":
        from daah_tf.data.mirflickr import load_mirflickr25k
        return load_mirflickr25k(data_dir, seed)
    if name == "nuswide":
        from daah_tf.data.nuswide import load_nuswide
        return load_nuswide(data_dir, seed)
    if name == "iaprtc12":
        from daah_tf.data.iaprtc12 import load_iaprtc12
        return load_iaprtc12(data_dir, seed)
    from daah_tf.data.folder import load_folder
    return load_folder(data_dir, seed, skip_bad_rows=skip_bad_rows, verify_images=verify_images)


def load_dataset(name, data_dir, seed=0, skip_bad_rows=False, *, verify_images=False,
                 **synthetic_kwargs):
    """Loads a dataset by name.

    Args:
        name: one of DATASETS.
        data_dir: the dataset's folder (`--data_dir`); unused for "synthetic".
        seed: seed of the protocol split (and of the synthetic data).
        skip_bad_rows: "folder" only: skip bad rows with a warning instead of raising.
        verify_images: "folder" only: decode every image file, undecodable ones are bad rows.
        **synthetic_kwargs: "synthetic" only (num_pairs, num_classes, image_size, num_query),
            passed to `make_synthetic`; ignored by the other datasets.

    Returns:
        A PairedDataset.

    Raises:
        ValueError: unknown name (the message lists the choices).
        DatasetError: no data_dir, a data_dir that does not exist, or bad data.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "synthetic":
        from daah_tf.data.synthetic import make_synthetic
        return make_synthetic(seed=seed, **synthetic_kwargs)
    if not data_dir:
        raise DatasetError(f"dataset {name!r} needs its folder: pass --data_dir=DIR")
    if not os.path.isdir(data_dir):
        raise DatasetError(f"data folder {data_dir} (--data_dir) does not exist or is not a "
                           f"folder")
    return _load_file_dataset(name, data_dir, seed, skip_bad_rows, verify_images)
