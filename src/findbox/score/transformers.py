"""Scorers from transformers `save_pretrained` folders: SigLIP, SigLIP 2, CLIP, MetaCLIP."""

from __future__ import annotations

from pathlib import Path

import torch

from findbox.cache import TEXT_CACHE_BYTES
from findbox.score import base
from findbox.score.preprocess import DEFAULT_PROMPTS, CropPreprocess, format_prompt


def _features(output) -> torch.Tensor:
    """The projected embedding from get_image_features / get_text_features.

    transformers < 5 returns it as a tensor; transformers 5 returns a
    BaseModelOutputWithPooling whose pooler_output is already projected (CLIP puts
    visual_projection / text_projection there, as its forward uses for
    logits_per_image; SigLIP's pooling head is the projection).
    """
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"scorer: cannot find embeddings in {type(output).__name__}")
    return pooled


def naflex_inputs(pixels: torch.Tensor, patch_size: int) -> dict[str, torch.Tensor]:
    """(n, 3, H, W) -> SigLIP 2 NaFlex inputs: every patch of the full grid, none padded.

    Patches are flattened (row, col, dy, dx, channel) like Siglip2ImageProcessor's.
    """
    n, c, h, w = pixels.shape
    gh, gw = h // patch_size, w // patch_size
    patches = pixels.reshape(n, c, gh, patch_size, gw, patch_size).permute(0, 2, 4, 3, 5, 1).reshape(n, gh * gw, -1)
    return {
        "pixel_values": patches,
        "pixel_attention_mask": torch.ones((n, gh * gw), dtype=torch.int32, device=pixels.device),
        "spatial_shapes": torch.tensor([[gh, gw]] * n, dtype=torch.long, device=pixels.device),
    }


# Families whose text tower is causal and pools at the first EOS token (CLIP, MetaCLIP): tokens after it
# change nothing, so a batch of captions pads to its longest only. SigLIP and SigLIP 2 pool the LAST
# position, a pad token for any caption shorter than max_length: padding there changes the embedding
# (tests/score/test_attention.py), so they keep max_length, as they were trained.
POOLS_AT_EOS = frozenset({"clip"})


def tokenize_prompted(tokenizer, prompt: str, captions: list[str], max_length: int, padding: str = "max_length"):
    """Captions -> the tokenizer's CPU batch of prompted texts, padded to max_length (or with
    padding="longest", to the batch's longest, cut at max_length).

    SigLIP was trained on max_length padding; the ONNX towers take the same batch (their text
    graphs have a fixed length).
    """
    texts = [format_prompt(prompt, c) for c in captions]
    return tokenizer(texts, padding=padding, truncation=True, max_length=max_length, return_tensors="pt")


# fused attention (torch's scaled_dot_product_attention) where the model class has it: same answers
# (tests/score/test_attention.py), faster (benchmarks/scorer_attention.py); transformers' default
# today, pinned so that a changed default cannot slow the towers down unnoticed
ATTENTION = "sdpa"


# findbox's own settings beside a save_pretrained folder: what transformers' files cannot say.
SCORER_SETTINGS_FILE = "findbox_scorer.json"


def read_scorer_settings(folder: str | Path) -> dict:
    """{"text_attention_mask": bool, ...} from the folder's settings file; {} when absent.

    SigLIP was trained without a text attention mask (big_vision, open_clip pass none and
    pool the last, padded position), so a SigLIP folder without this file runs unmasked,
    as its weights expect. Models trained here with the mask record it in this file.
    """
    path = Path(folder) / SCORER_SETTINGS_FILE
    if not path.is_file():
        return {}
    import json

    data = json.loads(path.read_text())
    unknown = set(data) - {"text_attention_mask"}
    if unknown:
        raise ValueError(f"scorer: unknown keys {sorted(unknown)} in {path}")
    return data


def write_scorer_settings(folder: str | Path, scorer: "TransformersScorer") -> None:
    import json

    settings = {"text_attention_mask": bool(scorer.text_attention_mask)}
    (Path(folder) / SCORER_SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")


def load_model(auto_class, path: Path):
    """The folder's model with fused attention (`ATTENTION`), or transformers' eager attention for a
    model class that has no SDPA path (logged, not an error: the answers are the same)."""
    try:
        return auto_class.from_pretrained(str(path), local_files_only=True, attn_implementation=ATTENTION)
    except ValueError as exc:
        if ATTENTION not in str(exc) and "scaled_dot_product_attention" not in str(exc):
            raise
        import logging

        logging.getLogger("findbox").info("scorer %s: no fused attention for this model class (%s); eager "
                                          "attention", path, exc)
        return auto_class.from_pretrained(str(path), local_files_only=True)


class TransformersScorer(base.Scorer):
    """A `Scorer` whose towers are a transformers image-text model (SigLIP, SigLIP 2, CLIP, MetaCLIP).

    `model` is the torch module itself: scorer training fine-tunes it in place and saves it
    with `save_pretrained`; `tokenize` is the text input training feeds it.
    """

    def __init__(
        self,
        model,
        tokenizer,
        preprocess: CropPreprocess,
        prompt: str,
        max_text_length: int,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        max_batch: int = 32,
        text_cache_size: int = 4096,
        text_attention_mask: bool = True,
        text_cache_bytes: int = TEXT_CACHE_BYTES,
    ):
        super().__init__(preprocess, prompt, device, dtype, max_batch, text_cache_size, text_cache_bytes)
        self.model = model.to(device=device, dtype=dtype).eval()
        self.tokenizer = tokenizer
        self.max_text_length = max_text_length
        self.text_attention_mask = text_attention_mask

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        prompt: str | None = None,
        max_batch: int = 32,
        text_cache_size: int = 4096,
        text_cache_bytes: int = TEXT_CACHE_BYTES,
    ) -> "TransformersScorer":
        path = Path(path)
        if not (path / "config.json").is_file():
            raise ValueError(f"scorer: expected a save_pretrained folder with config.json, got {str(path)!r}")
        from findbox.env import ensure_offline
        ensure_offline()  # transformers reads the offline variables at import
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        from findbox.logs import scorer_load_quiet
        from findbox.score.int8 import folder_model_type

        try:
            with scorer_load_quiet(folder_model_type(path)):
                model = load_model(AutoModel, path)
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            image_processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:
            raise ValueError(f"scorer: could not load {str(path)!r} with transformers: {exc}") from exc
        for method in ("get_image_features", "get_text_features"):
            if not hasattr(model, method):
                raise ValueError(f"scorer: expected an image-text model with {method}, got {type(model).__name__}")
        family = model.config.model_type
        text_config = getattr(model.config, "text_config", None)
        max_len = int(getattr(text_config, "max_position_embeddings", 64) or 64)
        settings = read_scorer_settings(path)
        return cls(
            model,
            tokenizer,
            CropPreprocess.from_image_processor(image_processor),
            prompt if prompt is not None else DEFAULT_PROMPTS.get(family, "This is a photo of {}."),
            max_len,
            torch.device(device),
            dtype,
            max_batch,
            text_cache_size,
            text_attention_mask=settings.get("text_attention_mask", family != "siglip"),
            text_cache_bytes=text_cache_bytes,
        )

    @property
    def info(self) -> dict:
        return {"kind": "transformers", "family": self.model.config.model_type, "prompt": self.prompt,
                "loss": "sigmoid" if getattr(self.model, "logit_bias", None) is not None else "softmax",
                "attention": getattr(self.model.config, "_attn_implementation", None) or "eager"}

    @property
    def embed_dim(self) -> int:
        cfg = self.model.config
        dim = getattr(cfg, "projection_dim", None) or getattr(getattr(cfg, "text_config", None), "hidden_size", None)
        return int(dim or 0)

    def logit_scale_bias(self) -> tuple[float, float]:
        return base.logit_scale_bias_of(self.model)

    def tokenize(self, captions: list[str], padding: str | None = None) -> dict[str, torch.Tensor]:
        """Captions -> {"input_ids": (m, L) int64[, "attention_mask"]} on `device`.

        L is `max_text_length`, or the longest caption's length for a family that pools at EOS
        (`POOLS_AT_EOS`); padding="max_length" asks for the fixed length (an ONNX export's).
        The mask is left out when the weights were trained without one (`text_attention_mask`).
        """
        if padding is None:
            padding = "longest" if self.model.config.model_type in POOLS_AT_EOS else "max_length"
        batch = tokenize_prompted(self.tokenizer, self.prompt, captions, self.max_text_length, padding)
        keep = ("input_ids", "attention_mask") if self.text_attention_mask else ("input_ids",)
        return {k: v.to(self.device) for k, v in batch.items() if k in keep}

    def caption_tokens(self, caption: str) -> tuple[int, int]:
        """(tokens of the prompted caption, `max_text_length`): above the second, `tokenize` cuts it."""
        # verbose=False: counting a long caption is not the "longer than the maximum" mistake it warns of
        ids = self.tokenizer(format_prompt(self.prompt, caption), verbose=False)["input_ids"]
        return len(ids), self.max_text_length

    def input_sizes(self) -> tuple[int, ...]:
        """Smaller square sides this model runs: multiples of its patch size, at least 2 patches a side.

        SigLIP and CLIP interpolate their position embeddings (`interpolate_pos_encoding`);
        SigLIP 2 NaFlex resizes them to any patch grid.
        """
        patch = int(self.model.config.vision_config.patch_size)
        side = min(self.preprocess.size_hw)
        return tuple(range(2 * patch, side, patch))

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.model.config.model_type == "siglip2":
            patch_size = self.model.config.vision_config.patch_size
            return _features(self.model.get_image_features(**naflex_inputs(pixels, patch_size)))
        if tuple(pixels.shape[-2:]) != tuple(self.preprocess.size_hw):  # small crops (`set_small_input`)
            return _features(self.model.get_image_features(pixel_values=pixels, interpolate_pos_encoding=True))
        return _features(self.model.get_image_features(pixel_values=pixels))

    def text_features(self, captions: list[str]) -> torch.Tensor:
        return self.token_features(self.tokenize(captions))

    def token_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """`tokenize` output -> (m, D) projected, not yet normalised. Training calls it on its own batches."""
        return _features(self.model.get_text_features(**tokens))
