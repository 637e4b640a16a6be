"""Retrieval evaluation as a library; `python -m daah_tf.evaluate` is its command.

    retrieval.py    the four directions and their numbers from codes and labels (NumPy only)
    diagnostics.py  code collapse and attention-mask / object-box IoU (NumPy only)
    encoding.py     CodeEncoder: a model's +-1 codes of pipeline batches (TensorFlow)
    run_report.py   a run directory evaluated: the table, eval/ files, plots and scalars

Nothing is imported here, so `from daah_tf.evaluation import retrieval` loads no TensorFlow.
"""
