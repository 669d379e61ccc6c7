"""The bounds a config is held to (:mod:`mouse_pipeline.config` re-exports every one).

Plain numbers, importing nothing, so that the schema (:mod:`~mouse_pipeline.config`), the
YAML reader (:mod:`~mouse_pipeline.config_yaml`) and the checks
(:mod:`~mouse_pipeline.config_checks`) share them without importing each other.
"""

MAX_CONFIG_BYTES = 1_000_000  # a config is a few kB; anything this large is the wrong file
MAX_DEPTH = 20  # nesting levels of the YAML (a config needs 4)
MAX_SEED = 2**31 - 1  # head seeds add up to 1000 * folds; numpy takes seeds below 2**32
MAX_FRAMES = 100_000  # window lengths, strides, dilations, post-processing lengths
MAX_PIXELS = 16_384  # sides and coordinates of crops
MAX_TRIALS = 1000  # hyperparameter trials (the grid is enumerated even for random search)
MAX_CANDIDATES = 100  # candidate values of one search key
MAX_PROBLEMS_SHOWN = 20  # problems listed in one error message
#: Settings whose memory need, estimated from below, exceeds this are refused at load time
#: (a batch of windows, decoded frames waiting for the backbone, crops, model weights).
MEMORY_LIMIT_GB = 16.0
MAX_EMBEDDING_DIM = 2048  # the widest backbone embedding (resnet50v2, resnet50)
INFERENCE_WINDOWS = 64  # windows per inference batch (sequences.inference.BATCH_WINDOWS)
LARGEST_INPUT = 299  # the largest default input side (inception_resnet_v2)
#: The sequence heads of stage 2, in the order the docs list them. ``sequences.models``
#: holds the same tuple as ``MODEL_KINDS`` (a test checks); this copy imports no TensorFlow.
MODEL_KINDS = ("lstm", "tcn", "linear", "mlp", "transformer")
MAX_TRANSFORMER_LAYERS = 4  # encoder layers of the transformer head
