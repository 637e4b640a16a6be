"""MIRFLICKR-25K: the cleaned 20,015-pair subset used by deep cross-modal hashing papers.

24 labels, the standard 1386-d binary tag bag-of-words. `load_mirflickr25k` detects the layout
in data_dir (the first one found, in this order, unless `layout` names one):

(a) "text": the text files of e.g. the VTMUCH / DCMH preprocessing, row-aligned:
    all_imgs.txt (`mirflickr/imN.jpg`), all_tags.txt (comma-separated tags), all_labels.txt
    (24 space-separated 0/1), TagList.txt (the 1386-word vocabulary, one per line) and, optional,
    labels_annotation.txt (comma-separated label names, checked against all_labels.txt).
    Images are "paths": data_dir/<line of all_imgs.txt>, confined to data_dir. The image files
    need not be there (the pipeline opens them later): extras["missing_images"] counts the
    absent ones, and `missing_images(dataset)` lists them.
(b) "single": FLICKR-25K.mat (DCMH / SSAH) with `images` (any 4-D layout), `YAll`, `LAll`;
(c) "four": mirflickr25k-{iall,fall,lall,yall}.mat (DJSRH / AGAH style; `IAll` images or `FAll`
    features, `YAll`, `LAll`), v5 or v7.3.

Tag matching (layout a): lines split on ",", each tag stripped of surrounding whitespace (CR, LF,
spaces, tabs) and compared exactly, case-sensitively, with the vocabulary lines (stripped the
same way). Tags not in the vocabulary are ignored, empty tags too; a tag repeated on a line counts
once (the BoW is binary 0/1). The vocabulary and the tags of this subset are all lower case, so
no case folding is needed to reproduce the standard BoW.

Protocol: query 2,000 / database the other 18,015 / train 10,000 drawn from the database
(`random_protocol_split(20015, 2000, 10000, seed)`). The text layout must have exactly 20,015
rows. The .mat layouts accept other row counts when every modality agrees (subsets, test files);
the sizes then scale in proportion to N (rounded, at least 1), with a warning.
"""

import os

import numpy as np

from daah_tf.data.base import DatasetError, PairedDataset
from daah_tf.data.folder import missing_files, resolve_inside
from daah_tf.data.mat_files import MatLayout, load_mat_layout
from daah_tf.data.splits import random_protocol_split

NUM_PAIRS = 20015
NUM_QUERY = 2000
NUM_TRAIN = 10000
TEXT_DIM = 1386
# The 24 MIRFLICKR-25K concepts, in the column order of all_labels.txt / LAll (alphabetical);
# checked against labels_annotation.txt when that file is present.
LABEL_NAMES = ("animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food",
               "indoor", "lake", "male", "night", "people", "plant_life", "portrait", "river",
               "sea", "sky", "structures", "sunset", "transport", "tree", "water")
TEXT_FILES = {"images": "all_imgs.txt", "tags": "all_tags.txt", "labels": "all_labels.txt",
              "vocabulary": "TagList.txt"}
ANNOTATION_FILE = "labels_annotation.txt"
LAYOUT = MatLayout(
    name="mirflickr25k",
    prefixes=("mirflickr25k", "mirflickr"),
    single_files=("FLICKR-25K.mat", "mirflickr25k.mat", "MIRFLICKR25K.mat"),
    standard_pairs=NUM_PAIRS, num_query=NUM_QUERY, num_train=NUM_TRAIN, text_dim=TEXT_DIM,
    num_labels=len(LABEL_NAMES), label_names=LABEL_NAMES,
    other_layouts=(f"the text files {', '.join(TEXT_FILES.values())}",))
LAYOUTS = ("text", "single", "four")


# --------------------------------------------------------------------------------------------
# Text layout
# --------------------------------------------------------------------------------------------

def read_lines(path):
    """The lines of a UTF-8 text file, without line ends (LF or CRLF), no trailing empty line.

    Raises:
        DatasetError naming the file (and the line, for invalid UTF-8).
    """
    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read ({error})") from error
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        raise DatasetError(f"{path}:{line}: not valid UTF-8 ({error.reason})") from error
    lines = text.replace("\r\n", "\n").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_vocabulary(path):
    """The tag vocabulary: one tag per line, stripped; V tags, unique and non-empty."""
    vocabulary = [line.strip() for line in read_lines(path)]
    column = {}
    for line_number, tag in enumerate(vocabulary, start=1):
        if not tag:
            raise DatasetError(f"{path}:{line_number}: empty tag")
        if tag in column:
            raise DatasetError(f"{path}:{line_number}: tag {tag!r} repeats line "
                               f"{column[tag] + 1}")
        column[tag] = line_number - 1
    return vocabulary


def tags_to_bow(tag_lines, vocabulary):
    """Binary bag-of-words of comma-separated tag lines over `vocabulary`.

    Tags are stripped of surrounding whitespace and matched exactly (case-sensitive); unknown
    and empty tags are ignored; repeats count once.

    Args:
        tag_lines: N strings, e.g. "sky,clouds,nikon".
        vocabulary: V tags.

    Returns:
        (N, V) float32 0/1.
    """
    column = {tag: index for index, tag in enumerate(vocabulary)}
    bow = np.zeros((len(tag_lines), len(vocabulary)), np.float32)
    for row, line in enumerate(tag_lines):
        columns = [column[tag] for tag in (t.strip() for t in line.split(",")) if tag in column]
        bow[row, columns] = 1.0
    return bow


def read_labels(path, num_labels):
    """(N, L) float32 from lines of L space-separated 0/1 values.

    Raises:
        DatasetError naming the file and line of a malformed line.
    """
    lines = read_lines(path)
    values = [line.split() for line in lines]
    for row, line in enumerate(values):
        # one cheap pass over Python lists; the 0/1 test on the whole array follows
        if len(line) != num_labels:
            raise _bad_label_line(path, row, lines[row], num_labels)
    table = np.asarray(values, dtype=str).reshape(len(lines), num_labels)
    bad_rows = ~np.isin(table, ("0", "1")).all(axis=1)
    if bad_rows.any():
        row = int(np.argmax(bad_rows))
        raise _bad_label_line(path, row, lines[row], num_labels)
    return (table == "1").astype(np.float32)


def _bad_label_line(path, row, line, num_labels):
    return DatasetError(f"{path}:{row + 1}: expected {num_labels} space-separated 0/1 values, "
                        f"got {line[:80]!r}")


def check_annotations(path, labels, label_names):
    """Checks that every line of labels_annotation.txt names exactly the label columns set.

    Raises:
        DatasetError naming the file and the first line that disagrees.
    """
    lines = read_lines(path)
    if len(lines) != len(labels):
        raise DatasetError(f"{path}: {len(lines)} lines, but {len(labels)} label rows")
    columns = labels.astype(bool).tolist()
    for row, line in enumerate(lines):
        named = {name.strip() for name in line.split(",") if name.strip()}
        set_columns = {name for name, on in zip(label_names, columns[row], strict=True) if on}
        if named != set_columns:
            raise DatasetError(f"{path}:{row + 1}: names {sorted(named)}, but the label row "
                               f"sets {sorted(set_columns)} (columns in the order "
                               f"{', '.join(label_names)})")


def _image_paths(path, lines, data_dir):
    """(N,) object array of absolute image paths under data_dir."""
    paths = []
    for row, line in enumerate(lines):
        name = line.strip()
        if not name:
            raise DatasetError(f"{path}:{row + 1}: empty image path")
        try:
            paths.append(resolve_inside(data_dir, name))
        except ValueError as error:
            raise DatasetError(f"{path}:{row + 1}: {error}") from error
    return np.asarray(paths, dtype=object)


def _check_row_counts(counts):
    """All text files must have NUM_PAIRS rows."""
    for path, count in counts.items():
        if count != NUM_PAIRS:
            detail = ", ".join(f"{os.path.basename(p)} {c}" for p, c in counts.items())
            raise DatasetError(f"{path}: {count} rows; the MIRFLICKR-25K text layout needs "
                               f"{NUM_PAIRS} row-aligned rows in each file ({detail})")


def _load_text_layout(data_dir, seed):
    files = {role: os.path.join(data_dir, name) for role, name in TEXT_FILES.items()}
    vocabulary = read_vocabulary(files["vocabulary"])
    image_lines, tag_lines = read_lines(files["images"]), read_lines(files["tags"])
    labels = read_labels(files["labels"], len(LABEL_NAMES))
    _check_row_counts({files["images"]: len(image_lines), files["tags"]: len(tag_lines),
                       files["labels"]: len(labels)})
    annotations = os.path.join(data_dir, ANNOTATION_FILE)
    if os.path.isfile(annotations):
        check_annotations(annotations, labels, LABEL_NAMES)
    images = _image_paths(files["images"], image_lines, data_dir)
    texts = tags_to_bow(tag_lines, vocabulary)
    return PairedDataset(
        name="mirflickr25k", images=images, image_kind="paths", texts=texts, text_kind="bow",
        labels=labels, label_names=list(LABEL_NAMES), vocabulary=vocabulary,
        splits=random_protocol_split(NUM_PAIRS, NUM_QUERY, NUM_TRAIN, seed),
        extras={"layout": "text", "missing_images": len(missing_files(images)),
                "rows_without_tags": int((texts.sum(axis=1) == 0).sum())})


def missing_images(dataset):
    """The image paths of a "paths" dataset that are not existing files: list of str."""
    if dataset.image_kind != "paths":
        return []
    return [dataset.images[index] for index in missing_files(dataset.images)]


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------

def _has_text_layout(data_dir):
    return all(os.path.isfile(os.path.join(data_dir, name)) for name in TEXT_FILES.values())


def load_mirflickr25k(data_dir, seed=0, layout=None, images="auto"):
    """Loads MIRFLICKR-25K from data_dir in any of its layouts (see the module docstring).

    Args:
        data_dir: the folder.
        seed: the protocol split's seed.
        layout: None (detect, in the order text, single, four), "text", "single" or "four".
        images: for the .mat layouts: "auto" (pixels when present, else features), "pixels",
            "features".

    Returns:
        PairedDataset "mirflickr25k": texts (N, 1386) float32 bag-of-words, labels (N, 24);
        images (N,) paths (text layout), (N, H, W, 3) uint8 pixels or (N, d) float32 features
        (.mat layouts); extras["layout"]; text layout also extras["missing_images"] (count),
        extras["rows_without_tags"], and `vocabulary`.

    Raises:
        DatasetError naming the folder or file.
    """
    if layout not in (None, *LAYOUTS):
        raise ValueError(f"layout must be one of {LAYOUTS} or None, got {layout!r}")
    if layout == "text" or (layout is None and _has_text_layout(data_dir)):
        missing = [name for name in TEXT_FILES.values()
                   if not os.path.isfile(os.path.join(data_dir, name))]
        if missing:
            raise DatasetError(f"{data_dir}: text layout files missing: {missing}")
        return _load_text_layout(data_dir, seed)
    return load_mat_layout(data_dir, LAYOUT, seed, images=images, kind=layout)
