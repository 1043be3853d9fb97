"""Third-party log lines that are understood and harmless, kept out of the way at their source;
and progress bars, which follow findbox's log level.

Each filter names the exact message it takes and says why it is harmless; nothing is filtered
blanket-wide, and every filter is installed only around the call that triggers its message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

# SigLIP text towers pool the last position and never read their bos/eos ids; SigLIP folders carry
# CLIP's ids (49406/49407) beyond their 32000-token vocabulary, which transformers 5 warns of as
# "may result in unexpected behavior" on every load. CLIP pools at its eos id, so CLIP keeps the warning.
SIGLIP_TYPES = frozenset({"siglip", "siglip2"})
UNUSED_TOKEN_IDS = ("Model config: bos_token_id must be `None`", "Model config: eos_token_id must be `None`")


class _Drop(logging.Filter):
    """Drops records whose message starts with one of `prefixes`."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


class _Demote(logging.Filter):
    """Re-levels records whose message starts with one of `prefixes` to DEBUG (shown under --log-level debug)."""

    def __init__(self, logger: logging.Logger, prefixes: tuple[str, ...]):
        super().__init__()
        self.logger, self.prefixes = logger, prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG and record.getMessage().startswith(self.prefixes):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self.logger.isEnabledFor(logging.DEBUG)
        return True


@contextlib.contextmanager
def _filtered(logger: logging.Logger, log_filter: logging.Filter) -> Iterator[None]:
    logger.addFilter(log_filter)
    try:
        yield
    finally:
        logger.removeFilter(log_filter)


def scorer_load_quiet(model_type: str | None) -> contextlib.AbstractContextManager:
    """Around loading a transformers scorer: SigLIP's unused bos/eos id warnings dropped (see UNUSED_TOKEN_IDS)."""
    if model_type not in SIGLIP_TYPES:
        return contextlib.nullcontext()
    return _filtered(logging.getLogger("transformers.configuration_utils"), _Drop(UNUSED_TOKEN_IDS))


def quantization_quiet() -> contextlib.AbstractContextManager:
    """Around ONNX Runtime's quantize_dynamic: its "Quantization parameters for tensor ... not specified"
    lines (one per non-linear tensor, ~60 for SigLIP; dynamic quantisation computes those at run time,
    so nothing is missing) go to DEBUG. ONNX Runtime logs them on the root logger."""
    root = logging.getLogger()
    # and quantize_static's advice to pre-process the model, and its note on the SigLIP head's Gemm bias
    return _filtered(root, _Demote(root, ("Quantization parameters for tensor", "Please consider",
                                          "Bias of Gemm node")))


# --- progress bars ---------------------------------------------------------------------------------


def progress_shown() -> bool:
    """Whether progress bars show: a bar is INFO-level output, so `--quiet` / `--log-level warning`
    (the "findbox" logger above INFO) hides it with the log lines."""
    return logging.getLogger("findbox").isEnabledFor(logging.INFO)


def progress(iterable=None, **kwargs):
    """findbox's one progress bar: tqdm on stderr, off when the caller says `disable=True` or when
    findbox logs above INFO (see progress_shown)."""
    from tqdm import tqdm

    kwargs["disable"] = bool(kwargs.get("disable")) or not progress_shown()
    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, **kwargs)


def quiet_third_party_bars() -> None:
    """Hide the bars transformers and huggingface_hub draw themselves (e.g. "Writing model shards"):
    they read HF_HUB_DISABLE_PROGRESS_BARS at import; an already imported transformers is told directly.
    ultralytics' bars follow its VERBOSE, which findbox leaves off except in training (see
    findbox.train.detector), where they are shown only while progress_shown()."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
