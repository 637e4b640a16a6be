"""python tools/visualize_attention.py --model_dir=DIR [--num=16] [--out=FILE.png] \
    [--split=query] [--words=6] [--checkpoint=best|latest] [--data_dir=DIR]

Draws what a trained DAAH run attends to, one row per example (the first --num pairs of
--split, in split order):

- datasets with pictures (synthetic, folder, MIRFLICKR, ...): the image (with the object boxes
  where the dataset knows them), the attended mask over it (attended cells bright, the rest
  dimmed), and the unattended part (the image with the attended cells blacked out: what the
  unattended codes H^ see);
- datasets whose images are feature vectors (Wiki's 128-d SIFT bags of visual words): there is
  no picture to draw, so the panel shows the image-feature mask instead, one bar per feature
  dimension (its value), coloured by attended / unattended; a cached feature map (h, w, c)
  shows its (h, w) mask as a heatmap;
- for text, the attended words with their word scores (below), the best --words of them.

Word score. The text attention does not weigh words: it weighs the d hidden features of the
text encoder E^T (design.md: Z = 1[P >= 1/d] over f^T in R^d). A word's score says how much of
that word's own encoding falls into the dimensions the whole text's mask attends to:

    f_w     = E^T(e_w) - E^T(0)          e_w: the one-hot bag of words of word (n-gram) w alone;
                                         subtracting the empty text's encoding leaves out the
                                         biases, which every word shares
    score_w = ||Z * f_w||^2 / ||f_w||^2  Z: (d,) the {0,1} text mask of the whole text

It lies in [0, 1]: 1 when the word's features lie wholly in attended dimensions, 0 when wholly
in unattended ones. Only words present in the text (bag-of-words column > 0; not the
out-of-vocabulary column) are scored; a word whose encoding equals the empty text's has no
score. A word whose energy were spread evenly over the d dimensions would score |Z|/d, the
attended fraction, drawn as a dashed line. For bag-of-words datasets without a vocabulary (Wiki's
10 LDA topics) the "words" are the columns, named #j.

The PNG is written atomically (temporary file, then rename). Needs matplotlib, the `plot` extra
(pip install -e '.[plot]'); drawn with the Agg backend, never a window.
"""

import argparse
import io
import logging
import os
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ chatter

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402

# No TensorFlow behind these: it loads when the run is restored.
from daah_tf.atomic import atomic_write_bytes  # noqa: E402
from daah_tf.evaluation.diagnostics import mask_iou, upsample_cells  # noqa: E402
from daah_tf.run import CHECKPOINTS, Run, RunError, split_rows  # noqa: E402

# Figure geometry: the PNG is exactly figure_size_pixels(num) (no tight bounding box).
WIDTH_IN = 12.0
ROW_IN = 2.1
HEADER_IN = 0.95
DPI = 100
PICTURE_RATIOS = (1.0, 1.0, 1.0, 2.4)  # image, overlay, unattended, words
VECTOR_RATIOS = (3.0, 2.4)  # feature mask, words
ATTENDED_COLOUR = "tab:red"
UNATTENDED_COLOUR = "tab:grey"


class VisualizeError(Exception):
    """A problem the user can fix: printed, no traceback."""


def figure_size_pixels(num):
    """(width, height) in pixels of the PNG for `num` rows."""
    return int(round(WIDTH_IN * DPI)), int(round((HEADER_IN + ROW_IN * num) * DPI))


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        from matplotlib import pyplot
    except ImportError:
        raise VisualizeError("visualize_attention draws with matplotlib, which is not installed: "
                             "it is the `plot` extra (pip install -e '.[plot]')") from None
    return pyplot


# ----------------------------------------------------------------------------------------------
# Word scores


def word_scores(text_encoder, bow, text_mask):
    """Word scores of each text (see the module docstring).

    Args:
        text_encoder: E^T, (n, V) -> (n, d).
        bow: (B, V) bag of words of the texts.
        text_mask: (B, d) {0,1} text attention masks of the same texts.

    Returns:
        (B, V) float64: score_w in [0, 1] where word w is present in the text and has an
        encoding of its own, NaN elsewhere. Column 0 is scored like the others; callers with a
        TextFeaturizer drop it (out of vocabulary).
    """
    bow = np.asarray(bow, np.float32)
    mask = np.asarray(text_mask, np.float64)
    scores = np.full(bow.shape, np.nan)
    present = np.flatnonzero((bow > 0).any(axis=0))
    if len(present) == 0:
        return scores
    one_hot = np.zeros((len(present) + 1, bow.shape[1]), np.float32)  # last row: empty text
    one_hot[np.arange(len(present)), present] = 1.0
    encoded = np.asarray(text_encoder(one_hot, training=False), np.float64)
    own = encoded[:-1] - encoded[-1]  # (k, d): the biases every word shares left out
    energy = own**2
    total = energy.sum(axis=1)  # (k,)
    attended = energy @ mask.T  # (k, B): ||Z_b * f_w||^2
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.clip(attended / total[:, None], 0.0, 1.0)  # clip: rounding only
    share[total <= 0] = np.nan
    scores[:, present] = share.T
    scores[bow <= 0] = np.nan
    return scores


def top_words(scores, names, count, skip_columns=()):
    """[(name, score)] of the `count` best-scoring words of one text, best first.

    scores: (V,) from word_scores (NaN: not scored); names: V column names.
    """
    order = [j for j in np.argsort(-np.nan_to_num(scores, nan=-1.0), kind="stable")
             if np.isfinite(scores[j]) and j not in skip_columns]
    return [(names[j], float(scores[j])) for j in order[:count]]


# ----------------------------------------------------------------------------------------------
# Model and data -> arrays


def load_examples(model_dir, num, split="query", checkpoint="best", data_dir=None, words=6):
    """Everything the figure shows, as NumPy arrays and lists (the model is not kept).

    Returns a dict:
        dataset: name; image_kind: "pixels" / "paths" / "features"; split: name;
        rows: (n,) dataset rows, n = min(num, split size);
        images: (n, S, S, 3) float in [0, 255] (pictures) or (n, ...) features;
        image_mask: (n, h, w) or (n, d) {0,1};
        boxes: (n, K, 4) object boxes or None;
        labels: n lists of label names; texts: n strings (raw text) or None;
        text_mask: (n, d) {0,1}; word_scores: (n, V) (NaN: not scored);
        words: n lists of (word, score), best first; attended_text_fraction: (n,);
        mask_iou: (n,) per-example IoU with the boxes and random_mask_iou (n,), or None.
    """
    # Restoring for inference leaves the checkpoint's save_counter unread; TensorFlow warns.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    run = Run.open(model_dir)
    model = run.restore(checkpoint)
    if model.image_attention is None or model.text_attention is None:
        raise VisualizeError(f"{model_dir} was trained without attention (--attention=none): "
                             "there is no mask to draw")
    data = run.load_data(data_dir=data_dir)
    rows = split_rows(data, split)[:num]
    featurizer, config = run.featurizer, run.config
    batch = next(iter(run.batches(data, rows, batch_size=len(rows))))
    image_mask = model.image_mask(batch["image"]).numpy()
    text_features = model.text_encoder(batch["text"], training=False)
    text_mask = model.text_attention(text_features)[2].numpy()
    bow = batch["text"].numpy()
    scores = word_scores(model.text_encoder, bow, text_mask)
    if featurizer is not None:
        names, skip = ["[out of vocabulary]", *featurizer.vocabulary], (0,)
    elif data.vocabulary is not None:
        names, skip = list(data.vocabulary), ()
    else:
        names, skip = [f"#{j}" for j in range(bow.shape[1])], ()
    boxes = data.extras.get("object_boxes")
    boxes = None if boxes is None else np.asarray(boxes)[rows]
    ious = randoms = None
    if boxes is not None and image_mask.ndim == 3:
        per_row = [mask_iou(image_mask[i:i + 1], boxes[i:i + 1], config.data.image_size,
                            seed=config.data.seed + i) for i in range(len(rows))]
        ious = np.array([r["mask_iou"] for r in per_row])
        randoms = np.array([r["random_mask_iou"] for r in per_row])
    return {
        "dataset": data.name,
        "image_kind": data.image_kind,
        "split": split,
        "rows": rows,
        "images": batch["image"].numpy(),
        "image_mask": image_mask,
        "boxes": boxes,
        "labels": [[data.label_names[j] for j in np.flatnonzero(data.labels[r])] for r in rows],
        "texts": [str(data.texts[r]) for r in rows] if data.text_kind == "raw" else None,
        "text_mask": text_mask,
        "word_scores": scores,
        "words": [top_words(scores[i], names, words, skip) for i in range(len(rows))],
        "attended_text_fraction": text_mask.mean(axis=1),
        "mask_iou": ious,
        "random_mask_iou": randoms,
    }


# ----------------------------------------------------------------------------------------------
# Drawing


def _draw_boxes(axes, boxes):
    from matplotlib.patches import Rectangle

    for y0, x0, y1, x1 in boxes:
        if y0 >= 0:
            axes.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                     edgecolor="yellow", linewidth=1.2))


def _draw_pictures(axes_row, example, row):
    image = np.clip(example["images"][row] / 255.0, 0.0, 1.0)
    up = upsample_cells(example["image_mask"][row] > 0.5, image.shape[0])[..., None]
    # The same rendering as monitor.mask_overlay (TensorBoard): attended bright, rest dimmed.
    overlay = np.clip(image * (0.25 + 0.75 * up), 0.0, 1.0)
    unattended = image * (1.0 - up)
    panels = (image, overlay, unattended)
    attended = float(example["image_mask"][row].mean())
    titles = [", ".join(example["labels"][row]) or "(no label)",
              f"attended {attended:.0%} of cells", "unattended part"]
    if example["mask_iou"] is not None:
        titles[1] += (f"\nIoU {example['mask_iou'][row]:.2f} "
                      f"(random {example['random_mask_iou'][row]:.2f})")
    for axes, panel, title in zip(axes_row, panels, titles, strict=True):
        axes.imshow(panel, interpolation="nearest")
        axes.set_title(title, fontsize=8)
        axes.set_xticks([])
        axes.set_yticks([])
    if example["boxes"] is not None:
        _draw_boxes(axes_row[0], example["boxes"][row])


def _draw_feature_mask(axes, example, row):
    mask = example["image_mask"][row] > 0.5
    features = np.asarray(example["images"][row], np.float64)
    title = f"{', '.join(example['labels'][row])}: image-feature mask, attended {mask.mean():.0%}"
    if mask.ndim == 2:  # a cached feature map: its (h, w) mask as a heatmap
        axes.imshow(mask, cmap="Reds", vmin=0, vmax=1, interpolation="nearest")
        axes.set_xticks([])
        axes.set_yticks([])
    else:
        values = features.reshape(-1)
        colours = np.where(mask, ATTENDED_COLOUR, UNATTENDED_COLOUR)
        axes.bar(np.arange(len(values)), values, width=1.0, color=colours)
        axes.set_xlim(-0.5, len(values) - 0.5)
        axes.set_ylabel("value", fontsize=7)
        axes.tick_params(labelsize=7)
    axes.set_title(title, fontsize=8)


def _draw_words(axes, example, row):
    words = example["words"][row]
    baseline = float(example["attended_text_fraction"][row])
    if words:
        names = [name for name, _ in words][::-1]
        values = [score for _, score in words][::-1]
        axes.barh(np.arange(len(words)), values, color=ATTENDED_COLOUR, height=0.7)
        axes.set_yticks(np.arange(len(words)), names, fontsize=7)
        for y, value in enumerate(values):
            inside = value > 0.85  # a label past the bar's end would leave the axes
            axes.text(value - 0.02 if inside else value + 0.02, y, f"{value:.2f}", va="center",
                      ha="right" if inside else "left", fontsize=6,
                      color="white" if inside else "black")
    else:
        axes.set_yticks([])
        axes.text(0.5, 0.5, "no scored word", ha="center", va="center", fontsize=8)
    axes.axvline(baseline, color="black", linestyle="--", linewidth=0.8)
    axes.set_xlim(0, 1)
    axes.tick_params(axis="x", labelsize=6)
    text = example["texts"][row] if example["texts"] is not None else None
    text_mask = np.asarray(example["text_mask"][row]) > 0.5
    title = (f"word scores (dashed: the attended share, {int(text_mask.sum())} of "
             f"{text_mask.size} text dims)")
    if text is not None:
        title = textwrap.shorten(text, 70, placeholder=" ...") + "\n" + title
    axes.set_title(title, fontsize=7)


def draw_figure(example, path):
    """Writes the grid PNG of `example` (from load_examples) to `path`, atomically.

    Returns (width, height) in pixels; the figure has one row per example.
    """
    pyplot = _pyplot()
    num = len(example["rows"])
    pictures = example["image_kind"] != "features"
    ratios = PICTURE_RATIOS if pictures else VECTOR_RATIOS
    width, height = figure_size_pixels(num)
    figure, axes = pyplot.subplots(
        num, len(ratios), figsize=(width / DPI, height / DPI), dpi=DPI, squeeze=False,
        gridspec_kw={"width_ratios": ratios})
    for row in range(num):
        if pictures:
            _draw_pictures(axes[row, :3], example, row)
        else:
            _draw_feature_mask(axes[row, 0], example, row)
        _draw_words(axes[row, -1], example, row)
    header = (f"{example['dataset']}, {example['split']} split, first {num} pairs: "
              "what the attention of DAAH keeps (attended) and hides (unattended)")
    if not pictures:
        header += ("\nThe images of this dataset are feature vectors, not pictures: each bar is "
                   "one image feature (its value), red where the image attention attends.")
    height_in = height / DPI
    figure.suptitle(header, fontsize=9, y=1.0 - 0.08 / height_in, va="top")
    top = 1.0 - HEADER_IN / height_in
    bottom = 0.3 / height_in  # room for the last row's tick labels
    figure.subplots_adjust(left=0.03 if pictures else 0.05, right=0.98, bottom=bottom,
                           top=top, wspace=0.35, hspace=0.75)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    pyplot.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return width, height


# ----------------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Draw what a DAAH run attends to.")
    parser.add_argument("--model_dir", required=True, help="Run directory of daah_tf.train.")
    parser.add_argument("--num", type=int, default=16, help="Examples (rows of the grid).")
    parser.add_argument("--out", default=None,
                        help="The PNG to write (default: DIR/attention_<split>.png).")
    parser.add_argument("--split", default="query", help="query, database, train, validation.")
    parser.add_argument("--words", type=int, default=6, help="Top words shown per text.")
    parser.add_argument("--checkpoint", default="best", choices=CHECKPOINTS)
    parser.add_argument("--data_dir", default=None, help="Override the run's data folder.")
    args = parser.parse_args(argv)
    if args.num < 1 or args.words < 1:
        parser.error("--num and --words must be at least 1")
    if args.out is None:
        args.out = os.path.join(args.model_dir, f"attention_{args.split}.png")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        _pyplot()  # before TensorFlow loads: a missing matplotlib fails in a second
        example = load_examples(args.model_dir, args.num, args.split, args.checkpoint,
                                args.data_dir, args.words)
        width, height = draw_figure(example, args.out)
    except (VisualizeError, RunError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {args.out} ({width}x{height} px, {len(example['rows'])} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
