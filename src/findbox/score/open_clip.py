"""open_clip image-text models (CLIP, SigLIP, MetaCLIP, EVA, ... architectures) with local weights.

The architecture comes from open_clip's built-in configs (or a model-config JSON
file in open_clip's format), the weights from a local file, the tokenizer from
the package (CLIP's BPE ships with open_clip) or from a local transformers
tokenizer folder (SigLIP-type architectures, whose tokenizers otherwise come
from the hub). Nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from findbox.cache import TEXT_CACHE_BYTES
from findbox.score.preprocess import DEFAULT_PROMPTS, CropPreprocess, format_prompt
from findbox.score import base

RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
            "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


def _hub_tokenizer(arch: str, text_cfg: dict) -> bool:
    """Whether open_clip would fetch this architecture's tokenizer from the hub."""
    return bool(text_cfg.get("hf_tokenizer_name")) or "siglip" in arch.lower()


def _preprocess_cfg(arch: str) -> dict:
    """mean / std / interpolation of the architecture's first released weights, if open_clip lists any.

    With `pretrained=None` open_clip falls back to OpenAI's mean and std, which is
    wrong for e.g. SigLIP (0.5, 0.5, 0.5); the tag registry holds the right values offline.
    """
    from findbox.env import require
    require("open_clip", "zoo")
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(arch)
    cfg = open_clip.get_pretrained_cfg(arch, tags[0]) if tags else {}
    return {k: cfg[k] for k in ("mean", "std", "interpolation") if k in cfg}


class OpenClipScorer(base.Scorer):
    """A `Scorer` whose model is an open_clip CLIP / CustomTextCLIP (`encode_image` / `encode_text`).

    `tokenizer` is open_clip's: captions -> (m, context_length) int64 ids, padded as trained.
    """

    def __init__(self, model, tokenizer, preprocess: CropPreprocess, prompt: str, arch: str, embed_dim: int,
                 device: torch.device, dtype: torch.dtype = torch.float32, max_batch: int = 32,
                 text_cache_size: int = 4096, text_cache_bytes: int = TEXT_CACHE_BYTES):
        super().__init__(preprocess, prompt, device, dtype, max_batch, text_cache_size, text_cache_bytes)
        self.model = model.to(device=device, dtype=dtype).eval()
        self.tokenizer = tokenizer
        self.arch = arch
        self._embed_dim = embed_dim

    @classmethod
    def from_files(
        cls,
        arch: str,
        weights: str | Path,
        tokenizer: str | Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        prompt: str | None = None,
        max_batch: int = 32,
        text_cache_size: int = 4096,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        text_cache_bytes: int = TEXT_CACHE_BYTES,
    ) -> "OpenClipScorer":
        """Build `arch` (a built-in open_clip name, or a model-config .json file) and load `weights`.

        weights: a state dict file (.bin/.pt/.pth/.safetensors, optionally under "state_dict",
        or big_vision .npz for SigLIP). tokenizer: a transformers tokenizer folder; required for
        architectures whose tokenizer open_clip takes from the hub.
        mean / std: override the normalisation read from open_clip's registry of released weights.
        """
        from findbox.env import require
        require("open_clip", "zoo")
        import open_clip

        if str(arch).endswith(".json"):
            arch_file = Path(arch)
            if not arch_file.is_file():
                raise ValueError(f"scorer: expected an open_clip model-config .json file, got {str(arch)!r}")
            open_clip.add_model_config(arch_file)  # registers it under the file's stem
            arch = arch_file.stem
        model_cfg = open_clip.get_model_config(arch)
        if model_cfg is None:
            raise ValueError(f"scorer: expected an open_clip architecture (see open_clip.list_models()), got {arch!r}")
        weights = Path(weights)
        if not weights.is_file():
            # a pretrained tag such as "openai" would make open_clip download: only files are accepted
            raise ValueError(f"scorer: expected a local open_clip weights file, got {str(weights)!r} (not a file)")
        text_cfg = model_cfg.get("text_cfg", {})
        if text_cfg.get("hf_model_name"):
            raise ValueError(f"scorer: open_clip architecture {arch!r} builds its text tower from the hub "
                             f"({text_cfg['hf_model_name']!r}); it cannot be built offline")

        preprocess_cfg = _preprocess_cfg(arch)
        if mean is not None:
            preprocess_cfg["mean"] = tuple(float(v) for v in mean)
        if std is not None:
            preprocess_cfg["std"] = tuple(float(v) for v in std)
        try:
            model = open_clip.create_model(arch, pretrained=str(weights), pretrained_image=False,
                                           pretrained_text=False, force_preprocess_cfg=preprocess_cfg)
        except Exception as exc:  # open_clip raises RuntimeError, KeyError, ... for a mismatched file
            raise ValueError(f"scorer: could not load {str(weights)!r} into open_clip {arch!r}: {exc}") from exc

        context_length = int(text_cfg.get("context_length", model.context_length))
        if tokenizer is not None:
            tokenizer = Path(tokenizer)
            if not tokenizer.is_dir():
                raise ValueError(f"scorer: expected a local tokenizer folder, got {str(tokenizer)!r} (not a folder)")
            try:
                tok = open_clip.tokenizer.HFTokenizer(str(tokenizer), context_length=context_length,
                                                      **text_cfg.get("tokenizer_kwargs", {}))
            except Exception as exc:
                raise ValueError(f"scorer: could not load the tokenizer folder {str(tokenizer)!r}: {exc}") from exc
        elif _hub_tokenizer(arch, text_cfg):
            raise ValueError(f"scorer: open_clip {arch!r} takes its tokenizer from the hub; pass a local tokenizer "
                             f"folder (open_clip:ARCH:WEIGHTS:TOKENIZER_DIR, or tokenizer = ... in a scorer .toml)")
        else:
            tok = open_clip.get_tokenizer(arch, context_length=context_length)  # CLIP BPE bundled with open_clip

        pp = model.visual.preprocess_cfg
        size = pp["size"] if isinstance(pp["size"], (tuple, list)) else (pp["size"], pp["size"])
        preprocess = CropPreprocess(
            size_hw=(int(size[0]), int(size[1])),
            mean=tuple(float(v) for v in pp["mean"]),
            std=tuple(float(v) for v in pp["std"]),
            resample=int(RESAMPLE.get(pp.get("interpolation", "bicubic"), Image.Resampling.BICUBIC)),
        )
        if prompt is None:
            prompt = DEFAULT_PROMPTS["siglip" if model.logit_bias is not None else "clip"]
        return cls(model, tok, preprocess, prompt, arch, int(model_cfg["embed_dim"]), torch.device(device), dtype,
                   max_batch, text_cache_size, text_cache_bytes)

    @property
    def info(self) -> dict:
        return {"kind": "open_clip", "family": self.arch, "prompt": self.prompt,
                "loss": "sigmoid" if self.model.logit_bias is not None else "softmax"}

    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    def logit_scale_bias(self) -> tuple[float, float]:
        return base.logit_scale_bias_of(self.model)

    def tokenize(self, captions: list[str]) -> torch.Tensor:
        """Prompted captions -> (m, context_length) token ids, padded as the tokenizer was trained."""
        return self.tokenizer([format_prompt(self.prompt, c) for c in captions]).to(self.device)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def text_features(self, captions: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenize(captions))


def siglip_state_dict_to_open_clip(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers SiglipModel state dict -> open_clip SigLIP (e.g. ViT-B-16-SigLIP).

    open_clip's SigLIP is a CustomTextCLIP: a timm ViT trunk with a MAP head ("visual.trunk.*")
    and open_clip's text tower ("text.*", last-token pooling, projection with bias). Keys are
    renamed and q/k/v projections concatenated; no value changes. Used by
    benchmarks/bench_open_clip.py to run one set of weights through both libraries.
    """
    out = {"logit_scale": sd["logit_scale"].reshape(()), "logit_bias": sd["logit_bias"].reshape(())}
    v, t = "vision_model.", "text_model."
    out["visual.trunk.patch_embed.proj.weight"] = sd[v + "embeddings.patch_embedding.weight"]
    out["visual.trunk.patch_embed.proj.bias"] = sd[v + "embeddings.patch_embedding.bias"]
    out["visual.trunk.pos_embed"] = sd[v + "embeddings.position_embedding.weight"][None]
    out["text.token_embedding.weight"] = sd[t + "embeddings.token_embedding.weight"]
    out["text.positional_embedding"] = sd[t + "embeddings.position_embedding.weight"]
    layers = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith(v + "encoder.layers."))
    for i in range(layers):
        for tower, dst, names in (
            (v, f"visual.trunk.blocks.{i}.", dict(ln1="norm1", ln2="norm2", qkv="attn.qkv", out="attn.proj",
                                                  fc1="mlp.fc1", fc2="mlp.fc2")),
            (t, f"text.transformer.resblocks.{i}.", dict(ln1="ln_1", ln2="ln_2", qkv="attn.in_proj_",
                                                         out="attn.out_proj", fc1="mlp.c_fc", fc2="mlp.c_proj")),
        ):
            src = f"{tower}encoder.layers.{i}."
            for part in ("weight", "bias"):
                qkv = torch.cat([sd[f"{src}self_attn.{n}_proj.{part}"] for n in ("q", "k", "v")])
                # timm names it qkv.weight; torch's MultiheadAttention in_proj_weight
                out[dst + (f"{names['qkv']}{part}" if names["qkv"].endswith("_") else f"{names['qkv']}.{part}")] = qkv
                out[f"{dst}{names['ln1']}.{part}"] = sd[f"{src}layer_norm1.{part}"]
                out[f"{dst}{names['ln2']}.{part}"] = sd[f"{src}layer_norm2.{part}"]
                out[f"{dst}{names['out']}.{part}"] = sd[f"{src}self_attn.out_proj.{part}"]
                out[f"{dst}{names['fc1']}.{part}"] = sd[f"{src}mlp.fc1.{part}"]
                out[f"{dst}{names['fc2']}.{part}"] = sd[f"{src}mlp.fc2.{part}"]
    head, pool = v + "head.", "visual.trunk.attn_pool."
    d = sd[head + "probe"].shape[-1]
    out[pool + "latent"] = sd[head + "probe"]
    for part in ("weight", "bias"):
        out["visual.trunk.norm." + part] = sd[v + "post_layernorm." + part]
        in_proj = sd[f"{head}attention.in_proj_{part}"]
        out[f"{pool}q.{part}"], out[f"{pool}kv.{part}"] = in_proj[:d], in_proj[d:]
        out[f"{pool}proj.{part}"] = sd[f"{head}attention.out_proj.{part}"]
        out[f"{pool}norm.{part}"] = sd[f"{head}layernorm.{part}"]
        out[f"{pool}mlp.fc1.{part}"] = sd[f"{head}mlp.fc1.{part}"]
        out[f"{pool}mlp.fc2.{part}"] = sd[f"{head}mlp.fc2.{part}"]
        out["text.ln_final." + part] = sd[t + "final_layer_norm." + part]
        out["text.text_projection." + part] = sd[t + "head." + part]
    return out
