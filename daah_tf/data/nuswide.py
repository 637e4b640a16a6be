"""NUS-WIDE TC-21: 195,834 image/text pairs of the 21 most frequent concepts.

1000-d tag bag-of-words, 21 labels. Layouts (see `daah_tf.data.mat_files`), detected in data_dir
in this order:

- one file, `NUS-WIDE-TC21.mat` (or `nus-wide-tc21.mat`, `nuswide-tc21.mat`), holding images
  (`images` or `IAll`, any 4-D layout) or features (`FAll`), `YAll` and `LAll`;
- four files `nus-wide-tc21-{iall,fall,lall,yall}.mat` (DJSRH / AGAH style; also with the
  prefix `nuswide-tc21`), `lall`, `yall` and one of `iall` (pixels) / `fall` (features).

Protocol: query 2,100 / database the other 193,734 / train 10,500 drawn from the database
(`random_protocol_split(195834, 2100, 10500, seed)`); other row counts (subsets, test files)
scale the sizes in proportion, with a warning.

Memory: the pixels of 195,834 images at 224 x 224 x 3 take about 29 GB; the features variant
(`fall`) or a feature cache is the practical way to train on a smaller machine.
"""

from daah_tf.data.mat_files import MatLayout, load_mat_layout

LAYOUT = MatLayout(
    name="nuswide",
    prefixes=("nus-wide-tc21", "nuswide-tc21"),
    single_files=("NUS-WIDE-TC21.mat", "nus-wide-tc21.mat", "nuswide-tc21.mat"),
    standard_pairs=195834, num_query=2100, num_train=10500, text_dim=1000, num_labels=21)


def load_nuswide(data_dir, seed=0, images="auto", kind=None):
    """Loads NUS-WIDE TC-21 from data_dir.

    Args:
        data_dir: the folder with the .mat file(s).
        seed: the protocol split's seed.
        images: "auto" (pixels when present, else features), "pixels" or "features".
        kind: None (detect), "single" or "four".

    Returns:
        PairedDataset "nuswide": images (N, H, W, 3) uint8 "pixels" or (N, d) float32
        "features"; texts (N, 1000) float32 "bow"; labels (N, 21) float32; label names
        label00..label20 (the files carry no names).

    Raises:
        DatasetError naming the folder or file.
    """
    return load_mat_layout(data_dir, LAYOUT, seed, images=images, kind=kind)
