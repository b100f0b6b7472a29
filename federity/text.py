"""Text for the models that read it: a tokenizer the repository's owner built and committed (a Hugging Face
``tokenizers`` JSON file; nothing is downloaded), which turns a site's text column into token ids.

Ids are the tokenizer's plus one, so that 0 is always padding, whatever special tokens the tokenizer has: a
model's ``vocab_size`` must be at least the tokenizer's vocabulary plus one. Sequences are truncated to
``max_length`` tokens and padded with 0 to the longest in the dataset. The tokenizer is read from the commit, not
from the working tree, and is hostile input like every file another party wrote: it is size-bounded and parsed by
the ``tokenizers`` library, and a file it refuses is a clear error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from federity.errors import ConfigError

MAX_TOKENIZER_BYTES = 16 * 1024 * 1024
PAD_ID = 0


def load_tokenizer(raw: bytes, source: str) -> Any:
    """The ``tokenizers.Tokenizer`` serialised in ``raw`` (the bytes of ``source``, a file at a commit)."""
    from tokenizers import Tokenizer

    hint = "ask the owner to commit a tokenizer saved with the tokenizers library (`tokenizer.save('tokenizer.json')`)"
    if len(raw) > MAX_TOKENIZER_BYTES:
        raise ConfigError(f"{source} is {len(raw)} bytes, more than a tokenizer may be ({MAX_TOKENIZER_BYTES})",
                          hint)
    failure = None
    try:
        return Tokenizer.from_str(raw.decode("utf-8"))
    except Exception as exc:  # the library's errors on a file another party wrote: reported, not raised
        failure = type(exc).__name__
    raise ConfigError(f"{source} is not a tokenizer the tokenizers library can read ({failure})", hint)


def vocabulary_ids(tokenizer: Any) -> int:
    """How many ids a model must embed for ``tokenizer``'s output: its vocabulary, plus the padding id 0."""
    return int(tokenizer.get_vocab_size(with_added_tokens=True)) + 1


def token_ids(texts: list[str], tokenizer: Any, max_length: int) -> np.ndarray:
    """``texts`` as a ``[len(texts), steps]`` int64 array of ids (the tokenizer's plus one), truncated to
    ``max_length`` and padded with :data:`PAD_ID` to the longest."""
    encoded = [e.ids[:max_length] for e in tokenizer.encode_batch(texts)]
    steps = max((len(ids) for ids in encoded), default=0) or 1
    out = np.full((len(encoded), steps), PAD_ID, np.int64)
    for row, ids in enumerate(encoded):
        out[row, :len(ids)] = np.asarray(ids, np.int64) + 1
    return out
