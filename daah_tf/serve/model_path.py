"""Which SavedModel a run serves: TF Serving's versioned layout or a plain export."""

from daah_tf.saved_model_layout import latest_saved_model


def resolve_saved_model(model_dir):
    """The SavedModel folder of a run: DIR/saved_model/<newest complete numeric version>/ (TF
    Serving's BASE/<version>/ layout, highest served), else DIR/saved_model itself for a plain
    export. FileNotFoundError naming the folder when there is neither. The rule lives in
    daah_tf.saved_model_layout, shared with the exporter and `search`."""
    return latest_saved_model(model_dir)
