"""The synthetic corpus of the embedded default: real mp4/PNG files and Video-R1-schema JSON.

Videos are sequences of distinct shots (a background colour, moving shapes, sometimes a word),
joined by hard cuts and a few cross-fades; each question's answer is visible only in the shot it
names, so shot detection, retrieval and a tiny video LLM all have something real to do offline.
The held-out split can add long videos (``SynthLong``, many shots) on which frame budgets,
retrieval and compressors see different inputs.
"""

from marc_ops.config.synthetic import BACKGROUNDS, SyntheticConfig
from marc_ops.data.synthetic.corpus import CORPUS_FORMAT, CorpusFiles, generate_corpus
from marc_ops.data.synthetic.questions import IMAGE_CATEGORY, LONG_CATEGORY, VIDEO_CATEGORIES
from marc_ops.data.synthetic.scenes import SHAPE_COLOURS, SHAPE_KINDS, WORDS

__all__ = [
    "BACKGROUNDS",
    "CORPUS_FORMAT",
    "IMAGE_CATEGORY",
    "LONG_CATEGORY",
    "SHAPE_COLOURS",
    "SHAPE_KINDS",
    "VIDEO_CATEGORIES",
    "WORDS",
    "CorpusFiles",
    "SyntheticConfig",
    "generate_corpus",
]
