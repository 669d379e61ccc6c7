"""The run folder: what ``train`` writes and ``report`` and ``predict`` read.

This package owns the layout, as :mod:`.features.store` owns the cache's. Every file name
of a run is in :mod:`.layout`; training writes through :class:`FoldWriter`, the report and predict
read through :class:`RunFolder`, and any missing, truncated or malformed file becomes one
:class:`~mouse_pipeline.errors.RunError` that names the file and says what to do.

The layout and every name are in :mod:`.layout`; records and readers in :mod:`.records`,
the folder in :mod:`.folder`, the fold writer in :mod:`.writer`.

No TensorFlow here: models are saved by the caller into :meth:`FoldWriter.model_path`.
"""

from .folder import RunFolder
from .layout import (
    CONFIG_FILE,
    FINAL,
    FOLD_FILE,
    FOLDS_FILE,
    HISTORY_FILE,
    LOG_DIR,
    METRICS_FILE,
    MODEL_FILE,
    NORMALIZATION_FILE,
    PARTIAL,
    POST_KEYS,
    POSTPROCESS_FILE,
    PROBS_FILE,
    RUN_FILE,
    SCHEMA_VERSION,
    TIMINGS_FILE,
    check_behavior_names,
    model_file,
    unit_name,
)
from .records import FinalModel, FoldResult, read_meta, read_post, read_probs
from .writer import FoldWriter

__all__ = ["CONFIG_FILE", "FINAL", "FOLDS_FILE", "FOLD_FILE", "HISTORY_FILE", "LOG_DIR", "METRICS_FILE",
           "MODEL_FILE", "NORMALIZATION_FILE", "PARTIAL", "POSTPROCESS_FILE", "POST_KEYS", "PROBS_FILE",
           "RUN_FILE", "SCHEMA_VERSION", "TIMINGS_FILE", "FinalModel", "FoldResult", "FoldWriter", "RunFolder",
           "check_behavior_names", "model_file", "read_meta", "read_post", "read_probs", "unit_name"]
