"""The .mat helpers and the IAll/YAll/LAll-style layouts of MIRFLICKR-25K, NUS-WIDE, IAPR TC-12
and Wiki, on small generated files: MATLAB v5 (scipy.io.savemat) and v7.3 (h5py, stored the way
MATLAB stores them: axes reversed, behind a 512-byte header)."""

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse

from daah_tf.data.base import DatasetError
from daah_tf.data.iaprtc12 import load_iaprtc12
from daah_tf.data.mat_files import (
    check_finite,
    infer_num_rows,
    load_mat,
    orient,
    scaled_sizes,
    to_nhwc,
)
from daah_tf.data.mirflickr import LABEL_NAMES, load_mirflickr25k
from daah_tf.data.nuswide import load_nuswide
from daah_tf.data.wiki import load_wiki

pytestmark = pytest.mark.filterwarnings("ignore:.*protocol sizes are scaled:UserWarning")


N, H, W = 30, 8, 6  # H != W: a swapped height and width would show


def save_v73(path, arrays):
    """Writes arrays the way MATLAB -v7.3 does: HDF5 with a 512-byte header, axes reversed."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        for key, value in arrays.items():
            value = np.asarray(value)
            dataset = handle.create_dataset(key, data=value.T)  # column-major -> reversed axes
            dataset.attrs["MATLAB_class"] = np.bytes_("uint8" if value.dtype == np.uint8
                                                      else "double")
    with open(path, "r+b") as handle:
        handle.write(b"MATLAB 7.3 MAT-file, written by the daah_tf tests".ljust(128, b" "))


def save(path, arrays, version):
    if version == "v73":
        save_v73(path, arrays)
    else:
        scipy.io.savemat(path, arrays)


def make_data(num_rows=N, num_labels=24, text_dim=12, seed=0):
    """images (N, H, W, 3) uint8, texts (N, d) 0/1, labels (N, L) multi-hot, >= 1 per row."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(num_rows, H, W, 3), dtype=np.uint8)
    texts = (rng.random((num_rows, text_dim)) < 0.3).astype(np.float64)
    labels = (rng.random((num_rows, num_labels)) < 0.2).astype(np.float64)
    labels[np.arange(num_rows), rng.integers(num_labels, size=num_rows)] = 1.0
    return images, texts, labels


def matlab_images(images):
    """(N, H, W, 3) -> MATLAB's H x W x 3 x N."""
    return np.transpose(images, (1, 2, 3, 0))


@pytest.mark.parametrize("version", ["v5", "v73"])
def test_load_mat_gives_matlab_shapes_in_both_versions(tmp_path, version):
    _, texts, labels = make_data()
    path = str(tmp_path / "x.mat")
    save(path, {"LAll": labels, "YAll": texts}, version)
    arrays = load_mat(path, ["LAll", ("YAll", "tags")])
    assert arrays["LAll"].shape == (N, 24)
    np.testing.assert_array_equal(arrays["YAll"], texts)


@pytest.mark.parametrize("version", ["v5", "v73"])
def test_missing_key_lists_keys_found_and_expected(tmp_path, version):
    path = str(tmp_path / "x.mat")
    save(path, {"labelz": np.zeros((3, 2)), "other": np.ones((3, 1))}, version)
    with pytest.raises(DatasetError) as error:
        load_mat(path, [("LAll", "labels")])
    message = str(error.value)
    assert path in message and "labelz" in message and "other" in message
    assert "LAll or labels" in message


def test_keys_match_case_insensitively(tmp_path):
    path = str(tmp_path / "x.mat")
    save_v73(path, {"lall": np.eye(3)})
    assert load_mat(path, ["LAll"])["LAll"].shape == (3, 3)


def test_not_a_mat_file_is_a_dataset_error(tmp_path):
    path = tmp_path / "x.mat"
    path.write_bytes(b"this is not a MATLAB file at all" * 10)
    with pytest.raises(DatasetError, match="x.mat"):
        load_mat(str(path), ["LAll"])
    with pytest.raises(DatasetError, match="not found"):
        load_mat(str(tmp_path / "absent.mat"), ["LAll"])


@pytest.mark.parametrize("version", ["v5", "v73"])
def test_corrupt_files_are_dataset_errors(tmp_path, version):
    path = tmp_path / "x.mat"
    save(str(path), {"LAll": make_data()[2]}, version)
    content = path.read_bytes()
    for corrupt in (content[:len(content) // 2], content[:600] + b"\xff" * 64 + content[664:]):
        path.write_bytes(corrupt)
        try:
            load_mat(str(path), ["LAll"])
        except DatasetError as error:
            assert str(path) in str(error)


def test_cell_array_is_not_numeric(tmp_path):
    path = str(tmp_path / "x.mat")
    cells = np.empty((2,), dtype=object)
    cells[0], cells[1] = "a", "b"
    scipy.io.savemat(path, {"LAll": cells})
    with pytest.raises(DatasetError, match="not a numeric array"):
        load_mat(path, ["LAll"])


def test_v73_sparse_matrix_is_read_dense(tmp_path):
    dense = np.array([[0, 1, 0], [2, 0, 0], [0, 0, 3], [0, 4, 0]], np.float64)  # 4 x 3
    sparse = scipy.sparse.csc_matrix(dense)
    path = str(tmp_path / "s.mat")
    with h5py.File(path, "w", userblock_size=512) as handle:
        group = handle.create_group("YAll")
        group.attrs["MATLAB_class"] = np.bytes_("double")
        group.attrs["MATLAB_sparse"] = np.uint64(4)
        group["data"], group["ir"], group["jc"] = sparse.data, sparse.indices, sparse.indptr
    np.testing.assert_array_equal(load_mat(path, ["YAll"])["YAll"], dense)


def test_orient_accepts_both_orientations_and_names_bad_shapes():
    matrix = np.arange(12).reshape(4, 3)
    assert orient(matrix, 4, "YAll", "f.mat").shape == (4, 3)
    assert orient(matrix.T, 4, "YAll", "f.mat").shape == (4, 3)
    with pytest.raises(DatasetError) as error:
        orient(matrix, 5, "YAll", "f.mat")
    assert "f.mat" in str(error.value) and "(4, 3)" in str(error.value)
    assert "YAll" in str(error.value)


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "hwcn", "chwn"])
def test_to_nhwc_undoes_every_layout(layout):
    images = make_data()[0]
    order = {"nhwc": (0, 1, 2, 3), "nchw": (0, 3, 1, 2), "hwcn": (1, 2, 3, 0),
             "chwn": (3, 1, 2, 0)}[layout]
    np.testing.assert_array_equal(to_nhwc(np.transpose(images, order), N, "IAll", "f"), images)


def test_to_nhwc_rejects_images_without_colour_axis():
    with pytest.raises(DatasetError, match="3 colour channels"):
        to_nhwc(np.zeros((N, 5, 6, 7), np.uint8), N, "IAll", "f.mat")
    with pytest.raises(DatasetError, match="0..255"):
        to_nhwc(np.full((N, 4, 4, 3), 300.0), N, "IAll", "f.mat")


def test_check_finite_names_the_first_bad_row():
    values = np.zeros((10, 3), np.float32)
    values[7, 1], values[8, 0] = np.nan, np.inf
    with pytest.raises(DatasetError, match=r"f\.mat: YAll row 7"):
        check_finite(values, "YAll", "f.mat")


def test_infer_num_rows_reports_every_shape():
    assert infer_num_rows({"l": np.zeros((30, 24)), "t": np.zeros((12, 30))}) == 30
    with pytest.raises(DatasetError, match=r"row counts differ.*\(30, 24\).*\(29, 12\)"):
        infer_num_rows({"l": np.zeros((30, 24)), "t": np.zeros((29, 12))})


def test_scaled_sizes_exact_at_standard_and_proportional_otherwise():
    assert scaled_sizes(20015, 20015, 2000, 10000) == (2000, 10000)
    assert scaled_sizes(2001, 20015, 2000, 10000) == (200, 1000)
    assert scaled_sizes(3, 195834, 2100, 10500) == (1, 1)
    with pytest.raises(DatasetError):
        scaled_sizes(1, 20015, 2000, 10000)


def check_protocol(dataset, num_query, num_train):
    splits = dataset.splits
    assert len(splits["query"]) == num_query and len(splits["train"]) == num_train
    assert len(splits["query"]) + len(splits["database"]) == len(dataset)
    assert not set(splits["query"]) & set(splits["database"])
    assert set(splits["train"]) <= set(splits["database"])


@pytest.mark.parametrize("version", ["v5", "v73"])
def test_mirflickr_single_file_pixels(tmp_path, version):
    images, texts, labels = make_data()
    # DCMH's FLICKR-25K.mat: `images` as MATLAB H x W x 3 x N
    save(str(tmp_path / "FLICKR-25K.mat"),
         {"images": matlab_images(images), "YAll": texts, "LAll": labels}, version)
    with pytest.warns(UserWarning, match="scaled"):
        dataset = load_mirflickr25k(str(tmp_path), seed=0)
    assert dataset.image_kind == "pixels" and dataset.images.dtype == np.uint8
    np.testing.assert_array_equal(dataset.images, images)
    np.testing.assert_array_equal(dataset.texts, texts.astype(np.float32))
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.label_names == list(LABEL_NAMES) and dataset.extras["layout"] == "single"
    check_protocol(dataset, num_query=3, num_train=15)  # 30 * 2000 / 20015, 30 * 10000 / 20015


def test_mirflickr_single_file_chw_images_and_transposed_matrices(tmp_path):
    images, texts, labels = make_data()
    scipy.io.savemat(str(tmp_path / "flickr-25k.mat"),  # file names match case-insensitively
                     {"images": np.transpose(images, (0, 3, 1, 2)), "YAll": texts.T,
                      "LAll": labels.T})
    dataset = load_mirflickr25k(str(tmp_path), seed=1)
    np.testing.assert_array_equal(dataset.images, images)
    np.testing.assert_array_equal(dataset.labels, labels)


def write_four_files(directory, prefix="mirflickr25k", version="v73", data=None, features=None):
    images, texts, labels = data or make_data()
    save(str(directory / f"{prefix}-iall.mat"), {"IAll": matlab_images(images)}, version)
    scipy.io.savemat(str(directory / f"{prefix}-yall.mat"), {"YAll": texts})
    save(str(directory / f"{prefix}-lall.mat"), {"LAll": labels}, version)
    if features is not None:
        save(str(directory / f"{prefix}-fall.mat"), {"FAll": features}, version)
    return images, texts, labels


@pytest.mark.parametrize("version", ["v5", "v73"])
def test_mirflickr_four_files(tmp_path, version):
    images, texts, labels = write_four_files(tmp_path, version=version)
    dataset = load_mirflickr25k(str(tmp_path), seed=0)
    np.testing.assert_array_equal(dataset.images, images)
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.extras["layout"] == "four"


def test_mirflickr_four_files_features_variant(tmp_path):
    features = np.random.default_rng(1).normal(size=(N, 16))
    write_four_files(tmp_path, features=features)
    assert load_mirflickr25k(str(tmp_path), 0).image_kind == "pixels"  # pixels preferred
    dataset = load_mirflickr25k(str(tmp_path), 0, images="features")
    assert dataset.image_kind == "features" and dataset.images.dtype == np.float32
    np.testing.assert_allclose(dataset.images, features, rtol=1e-6)
    (tmp_path / "mirflickr25k-iall.mat").unlink()
    assert load_mirflickr25k(str(tmp_path), 0).image_kind == "features"


def test_mirflickr_split_is_reproducible_from_the_seed(tmp_path):
    write_four_files(tmp_path)
    first, again = load_mirflickr25k(str(tmp_path), 5), load_mirflickr25k(str(tmp_path), 5)
    other = load_mirflickr25k(str(tmp_path), 6)
    for split in ("query", "database", "train"):
        np.testing.assert_array_equal(first.splits[split], again.splits[split])
    assert not np.array_equal(first.splits["train"], other.splits["train"])


def test_mirflickr_wrong_key_lists_found_and_expected(tmp_path):
    write_four_files(tmp_path)
    scipy.io.savemat(str(tmp_path / "mirflickr25k-lall.mat"), {"labelz": make_data()[2]})
    with pytest.raises(DatasetError) as error:
        load_mirflickr25k(str(tmp_path), 0)
    message = str(error.value)
    assert "mirflickr25k-lall.mat" in message and "labelz" in message and "LAll" in message


def test_mirflickr_mismatched_row_counts(tmp_path):
    write_four_files(tmp_path)
    scipy.io.savemat(str(tmp_path / "mirflickr25k-yall.mat"), {"YAll": make_data(N - 1)[1]})
    with pytest.raises(DatasetError, match="row counts differ") as error:
        load_mirflickr25k(str(tmp_path), 0)
    assert "mirflickr25k-yall.mat" in str(error.value) and f"({N - 1}, 12)" in str(error.value)


def test_mirflickr_wrong_orientation(tmp_path):
    write_four_files(tmp_path)
    scipy.io.savemat(str(tmp_path / "mirflickr25k-yall.mat"),
                     {"YAll": np.zeros((N, 3, 4))})  # 3-D text: no (N, d) reading of it
    with pytest.raises(DatasetError) as error:
        load_mirflickr25k(str(tmp_path), 0)
    assert "mirflickr25k-yall.mat" in str(error.value) and "(30, 3, 4)" in str(error.value)


def test_mirflickr_nan_rows(tmp_path):
    images, texts, labels = make_data()
    texts[11, 2] = np.nan
    write_four_files(tmp_path, data=(images, texts, labels))
    with pytest.raises(DatasetError, match=r"mirflickr25k-yall\.mat: YAll row 11"):
        load_mirflickr25k(str(tmp_path), 0)


def test_mirflickr_labels_must_be_binary(tmp_path):
    images, texts, labels = make_data()
    labels[4, 0] = 2
    write_four_files(tmp_path, data=(images, texts, labels))
    with pytest.raises(DatasetError, match=r"LAll row 4 .*0 and 1"):
        load_mirflickr25k(str(tmp_path), 0)


def test_mirflickr_incomplete_and_absent_layouts(tmp_path):
    scipy.io.savemat(str(tmp_path / "mirflickr25k-lall.mat"), {"LAll": make_data()[2]})
    with pytest.raises(DatasetError, match="mirflickr25k-yall.mat"):
        load_mirflickr25k(str(tmp_path), 0)
    (tmp_path / "mirflickr25k-lall.mat").unlink()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError) as error:
        load_mirflickr25k(str(tmp_path), 0)
    message = str(error.value)
    assert "FLICKR-25K.mat" in message and "all_tags.txt" in message and "notes.txt" in message


def test_nuswide_single_file_v73(tmp_path):
    images, texts, labels = make_data(93, num_labels=21, text_dim=20)
    save_v73(str(tmp_path / "NUS-WIDE-TC21.mat"),
             {"IAll": matlab_images(images), "YAll": texts, "LAll": labels})
    dataset = load_nuswide(str(tmp_path), seed=0)
    np.testing.assert_array_equal(dataset.images, images)
    assert dataset.name == "nuswide" and dataset.labels.shape == (93, 21)
    check_protocol(dataset, num_query=1, num_train=5)  # 93 * 2100 / 195834, 93 * 10500 / ...


def test_nuswide_four_file_features(tmp_path):
    _, texts, labels = make_data(num_labels=21)
    features = np.random.default_rng(2).normal(size=(N, 7, 7, 5)).astype(np.float32)
    prefix = "nus-wide-tc21"
    save_v73(str(tmp_path / f"{prefix}-fall.mat"), {"FAll": features})
    save_v73(str(tmp_path / f"{prefix}-yall.mat"), {"YAll": texts})
    scipy.io.savemat(str(tmp_path / f"{prefix}-lall.mat"), {"LAll": labels})
    dataset = load_nuswide(str(tmp_path), 0)
    assert dataset.image_kind == "features" and dataset.images.shape == (N, 7, 7, 5)
    np.testing.assert_array_equal(dataset.images, features)


def test_nuswide_nan_features(tmp_path):
    _, texts, labels = make_data(num_labels=21)
    features = np.zeros((N, 4))
    features[3, 1] = np.inf
    scipy.io.savemat(str(tmp_path / "nus-wide-tc21.mat"),
                     {"FAll": features, "YAll": texts, "LAll": labels})
    with pytest.raises(DatasetError, match=r"nus-wide-tc21\.mat: FAll row 3"):
        load_nuswide(str(tmp_path), 0)


def test_iapr_presplit_file(tmp_path):
    rng = np.random.default_rng(3)
    _, texts, labels = make_data(40, num_labels=255, text_dim=29)
    features = rng.normal(size=(40, 9))
    scipy.io.savemat(str(tmp_path / "iapr-tc12-rand.mat"), {
        "VDatabase": features[:36], "YDatabase": texts[:36], "databaseL": labels[:36],
        "VTest": features[36:], "YTest": texts[36:], "testL": labels[36:]})
    dataset = load_iaprtc12(str(tmp_path), seed=0)
    assert dataset.extras["layout"] == "presplit" and dataset.image_kind == "features"
    np.testing.assert_array_equal(dataset.splits["query"], np.arange(36, 40))
    np.testing.assert_array_equal(dataset.splits["database"], np.arange(36))
    check_protocol(dataset, num_query=4, num_train=20)  # 36 * 10000 / 18000
    np.testing.assert_allclose(dataset.images, features.astype(np.float32))
    assert dataset.labels.shape == (40, 255) and len(dataset.label_names) == 255


def test_iapr_presplit_missing_key(tmp_path):
    _, texts, labels = make_data(10, num_labels=255)
    scipy.io.savemat(str(tmp_path / "iapr-tc12-rand.mat"), {
        "VDatabase": np.zeros((8, 3)), "YDatabase": texts[:8], "databaseL": labels[:8],
        "VTest": np.zeros((2, 3)), "YTest": texts[8:]})
    with pytest.raises(DatasetError) as error:
        load_iaprtc12(str(tmp_path), 0)
    assert "iapr-tc12-rand.mat" in str(error.value) and "VTest" in str(error.value)


def test_iapr_four_files_mixed_versions(tmp_path):
    images, texts, labels = write_four_files(
        tmp_path, prefix="iapr-tc12", data=make_data(num_labels=255, text_dim=15))
    dataset = load_iaprtc12(str(tmp_path), seed=0)
    np.testing.assert_array_equal(dataset.images, images)
    np.testing.assert_array_equal(dataset.texts, texts)
    check_protocol(dataset, num_query=3, num_train=15)


def wiki_arrays(num_train=12, num_test=5, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 11, size=num_train + num_test)
    return {"I_tr": rng.random((num_train, 128)), "I_te": rng.random((num_test, 128)),
            "T_tr": rng.random((num_train, 10)), "T_te": rng.random((num_test, 10)),
            "L_tr": ids[:num_train, None].astype(np.uint8),
            "L_te": ids[num_train:, None].astype(np.uint8)}


def test_wiki_class_ids_only_v73(tmp_path):
    arrays = wiki_arrays()
    save_v73(str(tmp_path / "wiki.mat"), arrays)
    dataset = load_wiki(str(tmp_path))
    ids = np.concatenate([arrays["L_tr"][:, 0], arrays["L_te"][:, 0]])
    np.testing.assert_array_equal(dataset.labels.argmax(axis=1) + 1, ids)
    assert dataset.labels.sum(axis=1).tolist() == [1.0] * 17
    np.testing.assert_array_equal(dataset.splits["query"], np.arange(12, 17))
    np.testing.assert_array_equal(dataset.splits["train"], np.arange(12))


def test_wiki_missing_key_and_nan(tmp_path):
    arrays = wiki_arrays()
    del arrays["T_te"]
    scipy.io.savemat(str(tmp_path / "wiki.mat"), arrays)
    with pytest.raises(DatasetError) as error:
        load_wiki(str(tmp_path))
    assert "wiki.mat" in str(error.value) and "T_te" in str(error.value)
    arrays = wiki_arrays()
    arrays["I_te"][2, 5] = np.nan
    scipy.io.savemat(str(tmp_path / "wiki.mat"), arrays)
    with pytest.raises(DatasetError, match="I_te row 2"):
        load_wiki(str(tmp_path))


def test_wiki_bad_class_id(tmp_path):
    arrays = wiki_arrays()
    arrays["L_tr"][3, 0] = 11
    scipy.io.savemat(str(tmp_path / "wiki.mat"), arrays)
    with pytest.raises(DatasetError, match="L_tr row 3 .*class id 11"):
        load_wiki(str(tmp_path))
