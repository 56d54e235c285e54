"""Text for the BEiT-3 union encoder: XLM-R sentencepiece tokenizers (paper Sec. 3.1, the union encoder's
text input).

* :mod:`~rs2sam2.text.spm_model`: reading sentencepiece model files (no ``protobuf`` needed), XLM-R's
  conventions and token constants;
* :mod:`~rs2sam2.text.tokenizer_files`: the ``tokenizers`` pipeline and the released folder layout built
  from a sentencepiece model;
* :mod:`~rs2sam2.text.training`: training a small sentencepiece tokenizer;
* :mod:`~rs2sam2.text.loading`: loading a tokenizer folder (files resolved like the weights, by
  :mod:`rs2sam2.weights.sources`) and checking it fits a model;
* :mod:`~rs2sam2.text.tokenizing`: referring expressions → ``input_ids`` / ``attention_mask``.
"""

from ..weights.sources import (
    ADDED_TOKENS_FILENAME,
    SPECIAL_TOKENS_MAP_FILENAME,
    SPM_FILENAME,
    TOKENIZER_CONFIG_FILENAME,
    TOKENIZER_JSON_FILENAME,
)
from .loading import load_tokenizer, validate_tokenizer
from .spm_model import OFFICIAL_PAD_TOKEN_ID, SEG_TOKEN, SentencePieceModelInfo, read_sentencepiece_model
from .tokenizing import clean_text, tokenize
from .training import train_sentencepiece_tokenizer

__all__ = [
    "ADDED_TOKENS_FILENAME",
    "OFFICIAL_PAD_TOKEN_ID",
    "SEG_TOKEN",
    "SPECIAL_TOKENS_MAP_FILENAME",
    "SPM_FILENAME",
    "TOKENIZER_CONFIG_FILENAME",
    "TOKENIZER_JSON_FILENAME",
    "SentencePieceModelInfo",
    "clean_text",
    "load_tokenizer",
    "read_sentencepiece_model",
    "tokenize",
    "train_sentencepiece_tokenizer",
    "validate_tokenizer",
]
