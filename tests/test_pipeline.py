"""The tf.data input pipeline: order as a pure function of (seed, epoch), resuming, epoch-aligned
batches, evaluation order, augmentation, image files, resizing, raw text, memory-mapped arrays."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from daah_tf.data.base import PairedDataset
from daah_tf.data.pipeline import epoch_order, make_pipeline
from daah_tf.data.text_featurizer import TextFeaturizer

N, SIDE, BATCH = 40, 12, 8


def toy(num_rows=N, side=SIDE, texts=None, images=None):
    """Pixels whose content varies by row; text column 0 and label column 0 hold the row."""
    rng = np.random.default_rng(1)
    rows = np.arange(num_rows, dtype=np.float32)
    if images is None:
        images = rng.integers(0, 256, size=(num_rows, side, side, 3), dtype=np.uint8)
    if texts is None:
        texts = np.stack([rows, np.ones(num_rows, np.float32)], axis=1)
    labels = np.stack([rows, (rows % 2).astype(np.float32)], axis=1)
    everything = np.arange(num_rows, dtype=np.int64)
    return PairedDataset(
        name="toy", images=images, image_kind="pixels", texts=texts,
        text_kind="bow" if texts.ndim == 2 else "raw", labels=labels, label_names=["row", "odd"],
        splits={"query": everything[:4], "database": everything[4:], "train": everything[4:]},
    )


def collect(dataset):
    """[(rows (B,), images (B, ...), texts (B, V))] of a pipeline with labels."""
    return [(labels[:, 0].numpy().astype(np.int64), inputs["image"].numpy(),
             inputs["text"].numpy()) for inputs, labels in dataset]


def training(data, index=None, **kwargs):
    kwargs = {"training": True, "seed": 7, **kwargs}
    index = data.splits["train"] if index is None else index
    return collect(make_pipeline(data, index, BATCH, **kwargs))


def test_order_is_deterministic_for_a_seed():
    data = toy()
    first, again = training(data, last_epoch=2), training(data, last_epoch=2)
    assert len(first) == len(again)
    for (rows_a, images_a, _), (rows_b, images_b, _) in zip(first, again, strict=True):
        np.testing.assert_array_equal(rows_a, rows_b)
        np.testing.assert_array_equal(images_a, images_b)  # augmentation included
    other = training(data, seed=8, last_epoch=2)
    assert any((a[0] != b[0]).any() for a, b in zip(first, other, strict=True))
    # Each epoch is a different permutation.
    per_epoch = len(data.splits["train"]) // BATCH
    epoch0 = np.concatenate([r for r, _, _ in first[:per_epoch]])
    epoch1 = np.concatenate([r for r, _, _ in first[per_epoch:]])
    assert (epoch0 != epoch1).any()


def test_resumed_run_sees_the_batches_of_an_uninterrupted_run():
    data = toy()
    per_epoch = len(data.splits["train"]) // BATCH
    whole = training(data, first_epoch=0, last_epoch=4)
    resumed = training(data, first_epoch=2, last_epoch=4)
    assert len(resumed) == 2 * per_epoch
    for (rows_a, images_a, texts_a), (rows_b, images_b, texts_b) in zip(
            whole[2 * per_epoch:], resumed, strict=True):
        np.testing.assert_array_equal(rows_a, rows_b)
        np.testing.assert_array_equal(images_a, images_b)
        np.testing.assert_array_equal(texts_a, texts_b)


def test_training_batches_stay_inside_an_epoch_and_drop_the_partial_one():
    data = toy()
    train = data.splits["train"]  # 36 rows, batch 8: 4 full batches, 4 rows dropped per epoch
    batches = training(data, last_epoch=3)
    per_epoch = len(train) // BATCH
    assert len(batches) == 3 * per_epoch
    assert all(len(rows) == BATCH for rows, _, _ in batches)
    for epoch in range(3):
        rows = np.concatenate([r for r, _, _ in batches[epoch * per_epoch:(epoch + 1) * per_epoch]])
        # exactly the first 32 positions of this epoch's permutation, no row twice
        expected = train[epoch_order(len(train), 7, epoch).numpy()[:per_epoch * BATCH]]
        np.testing.assert_array_equal(rows, expected)
        assert len(set(rows.tolist())) == len(rows)


def test_evaluation_keeps_every_row_in_split_order():
    data = toy()
    index = np.array([3, 17, 5, 30, 2, 11, 29, 38, 0, 21, 9], dtype=np.int64)  # 11: 8 + 3
    batches = collect(make_pipeline(data, index, BATCH, training=False))
    assert [len(rows) for rows, _, _ in batches] == [8, 3]
    rows = np.concatenate([r for r, _, _ in batches])
    np.testing.assert_array_equal(rows, index)
    images = np.concatenate([i for _, i, _ in batches])
    np.testing.assert_array_equal(images, data.images[index].astype(np.float32))  # no augment
    inputs_only = list(make_pipeline(data, index, BATCH, training=False, with_labels=False))
    assert set(inputs_only[0]) == {"image", "text"}


def test_max_batches_per_epoch():
    data = toy()
    capped = training(data, last_epoch=3, max_batches_per_epoch=2)
    full = training(data, last_epoch=3)
    per_epoch = len(data.splits["train"]) // BATCH
    assert len(capped) == 3 * 2
    for epoch in range(3):  # the first two batches of each epoch
        for k in range(2):
            np.testing.assert_array_equal(capped[epoch * 2 + k][0], full[epoch * per_epoch + k][0])


def test_augmentation_keeps_shape_and_range_and_changes_between_epochs():
    data = toy(num_rows=16)
    index = np.arange(16)
    batches = collect(make_pipeline(data, index, 16, training=True, seed=3, last_epoch=2))
    plain = collect(make_pipeline(data, index, 16, training=True, seed=3, last_epoch=2,
                                  augment=False))
    for _, images, _ in batches:
        assert images.shape == (16, SIDE, SIDE, 3) and images.dtype == np.float32
        assert images.min() >= 0.0 and images.max() <= 255.0
    # without augmentation: the exact pixels of the rows
    for rows, images, _ in plain:
        np.testing.assert_array_equal(images, data.images[rows].astype(np.float32))
    # with it: the same row looks different in epochs 0 and 1, and differs from the original
    (rows0, images0, _), (rows1, images1, _) = batches
    by_row0 = images0[np.argsort(rows0)]
    by_row1 = images1[np.argsort(rows1)]
    assert not np.allclose(by_row0, by_row1)
    assert not np.allclose(by_row0, data.images.astype(np.float32))


def _image_files(tmp_path):
    """Solid-colour JPEG and PNG files of assorted sizes: (paths, colours (n, 3))."""
    colours = np.array([[200, 30, 40], [10, 220, 90], [50, 60, 250], [128, 128, 128],
                        [255, 255, 0], [0, 0, 0]], dtype=np.uint8)
    sizes = [(20, 12), (9, 30), (16, 16), (33, 17), (5, 5), (64, 48)]
    paths = []
    for index, (colour, (width, height)) in enumerate(zip(colours, sizes, strict=True)):
        kind = "JPEG" if index % 2 else "PNG"
        path = tmp_path / f"image{index}.{kind.lower()}"
        Image.new("RGB", (width, height), tuple(int(c) for c in colour)).save(path, format=kind)
        paths.append(str(path))
    return paths, colours


def test_image_files_are_decoded_and_resized(tmp_path):
    paths, colours = _image_files(tmp_path)
    n = len(paths)
    data = toy(num_rows=n, images=np.asarray(paths, dtype=object))
    data.image_kind = "paths"
    batches = collect(make_pipeline(data, np.arange(n), 4, training=False, image_size=10))
    images = np.concatenate([i for _, i, _ in batches])
    assert images.shape == (n, 10, 10, 3)
    for index in range(n):
        tolerance = 0.5 if index % 2 == 0 else 4.0  # PNG lossless, JPEG close
        np.testing.assert_allclose(images[index], np.broadcast_to(colours[index], (10, 10, 3)),
                                   atol=tolerance)
    # training: augmented files keep the size
    trained = collect(make_pipeline(data, np.arange(n), 4, training=True, image_size=10))
    assert len(trained) == 1 and trained[0][1].shape == (4, 10, 10, 3)
    with pytest.raises(ValueError, match="image_size"):
        make_pipeline(data, np.arange(n), 4, training=False)


def test_a_png_with_detail_decodes_to_its_pixels(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(SIDE, SIDE, 3), dtype=np.uint8)
    path = tmp_path / "detail.png"
    Image.fromarray(pixels).save(path)
    data = toy(num_rows=1, images=np.asarray([str(path)], dtype=object))
    data.image_kind = "paths"
    (_, images, _), = collect(make_pipeline(data, [0], 1, training=False, image_size=SIDE))
    np.testing.assert_allclose(images[0], pixels.astype(np.float32), atol=1e-3)


def test_pixel_arrays_of_another_size_are_resized():
    data = toy(side=20)
    batches = collect(make_pipeline(data, np.arange(8), 8, training=False, image_size=10))
    images = batches[0][1]
    assert images.shape == (8, 10, 10, 3)
    expected = tf.image.resize(data.images[:8].astype(np.float32), (10, 10), antialias=True)
    np.testing.assert_allclose(images, expected.numpy(), atol=1e-3)
    trained = collect(make_pipeline(data, np.arange(16), 8, training=True, image_size=10))
    assert trained[0][1].shape == (8, 10, 10, 3)
    same = collect(make_pipeline(data, np.arange(8), 8, training=False, image_size=20))
    np.testing.assert_array_equal(same[0][1], data.images[:8].astype(np.float32))


def test_raw_text_goes_through_the_featurizer():
    words = ["sun", "sea", "北京", "Кошка", "sky,sun"]
    texts = np.asarray([f"{words[i % 5]} {words[(i * 3) % 5]} row" for i in range(N)],
                       dtype=object)
    data = toy(texts=texts)
    featurizer = TextFeaturizer.fit(texts[data.splits["train"]])
    with pytest.raises(ValueError, match="featurizer"):
        make_pipeline(data, data.splits["train"], BATCH, training=True)
    batches = collect(make_pipeline(data, data.splits["train"], BATCH, training=True, seed=2,
                                    text_featurizer=featurizer))
    for rows, _, bow in batches:
        assert bow.dtype == np.float32 and bow.shape == (BATCH, featurizer.dim)
        np.testing.assert_array_equal(bow, featurizer.transform(texts[rows]))


def test_memory_mapped_arrays(tmp_path):
    data = toy()
    np.save(tmp_path / "images.npy", data.images)
    np.save(tmp_path / "texts.npy", data.texts)
    mapped = toy(images=np.load(tmp_path / "images.npy", mmap_mode="r"),
                 texts=np.load(tmp_path / "texts.npy", mmap_mode="r"))
    assert isinstance(mapped.images, np.memmap) and isinstance(mapped.texts, np.memmap)
    for train in (True, False):
        expected = collect(make_pipeline(data, data.splits["train"], BATCH, training=train,
                                         seed=4, last_epoch=2))
        got = collect(make_pipeline(mapped, data.splits["train"], BATCH, training=train,
                                    seed=4, last_epoch=2))
        assert len(got) == len(expected)
        for a, b in zip(expected, got, strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y)
    # float16 feature maps (what a feature cache holds) come out as float32
    features = np.random.default_rng(0).standard_normal((N, 2, 2, 4)).astype(np.float16)
    np.save(tmp_path / "features.npy", features)
    cached = toy(images=np.load(tmp_path / "features.npy", mmap_mode="r"))
    cached.image_kind = "features"
    rows, images, _ = collect(make_pipeline(cached, np.arange(N), BATCH, training=True,
                                            seed=0))[0]
    assert images.dtype == np.float32
    np.testing.assert_array_equal(images, features[rows].astype(np.float32))  # no augmentation
