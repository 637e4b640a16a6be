"""IAPR TC-12: 20,000 image/text pairs, 2912-d text bag-of-words, 255 labels.

Layouts (see `daah_tf.data.mat_files`), detected in data_dir in this order:

- one file `iapr-tc12-rand.mat` (the DCMH-era random split; also `IAPR-TC12.mat`,
  `iapr-tc12.mat`) holding either
  - a database / test split: `VDatabase`, `YDatabase`, `databaseL`, `VTest`, `YTest`, `testL`
    (V = image, features (n, d) or 4-D pixels; Y = text BoW; L = labels). Rows are
    [database rows; test rows]; query = the test rows (2,000), database = the database rows
    (18,000), train = 10,000 of the database drawn from the seed. The file's own split is kept,
    so results compare with papers that used the same file;
  - or `images`/`IAll` (or `FAll`), `YAll`, `LAll`, split as below;
- four files `iapr-tc12-{iall,fall,lall,yall}.mat`.

Protocol of the all-in-one layouts: query 2,000 / database the other 18,000 / train 10,000 from
the database (`random_protocol_split(20000, 2000, 10000, seed)`); other row counts scale the sizes
in proportion, with a warning.
"""

from daah_tf.data.mat_files import MatLayout, load_mat_layout

LAYOUT = MatLayout(
    name="iaprtc12",
    prefixes=("iapr-tc12", "iaprtc12"),
    single_files=("iapr-tc12-rand.mat", "IAPR-TC12.mat", "iapr-tc12.mat", "iaprtc12.mat"),
    standard_pairs=20000, num_query=2000, num_train=10000, text_dim=2912, num_labels=255)


def load_iaprtc12(data_dir, seed=0, images="auto", kind=None):
    """Loads IAPR TC-12 from data_dir.

    Args:
        data_dir: the folder with the .mat file(s).
        seed: the seed of the protocol split (of the training set, for the pre-split file).
        images: "auto" (pixels when present, else features), "pixels" or "features"; the
            pre-split file holds one image array, used as stored.
        kind: None (detect), "single" or "four".

    Returns:
        PairedDataset "iaprtc12": images "features" (N, d) float32 or "pixels"
        (N, H, W, 3) uint8; texts (N, 2912) float32 "bow"; labels (N, 255) float32; label
        names label000..label254; extras["layout"] "presplit", "single" or "four".

    Raises:
        DatasetError naming the folder or file.
    """
    return load_mat_layout(data_dir, LAYOUT, seed, images=images, kind=kind)
