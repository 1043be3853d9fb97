"""Models built from scratch, in the real file formats users bring.

No weights can be downloaded, so tests, benchmarks and the demo bundle build
their own: an ultralytics .pt from a model yaml, a SigLIP `save_pretrained`
folder with a SentencePiece tokenizer learned from captions, and a Real-ESRGAN
compact .pth. Sizes are spelled out per preset.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import torch

# SigLIP tower sizes. "base" and "large" match siglip-base-patch16-224 and
# siglip-large-patch16-384 (so benchmarks measure real compute); "tiny" is for tests.
SIGLIP_PRESETS: dict[str, dict] = {
    "tiny": dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2),
    "small": dict(image_size=64, patch_size=8, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                  num_attention_heads=4),
    "base": dict(image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12),
    "large": dict(image_size=384, patch_size=16, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                  num_attention_heads=16),
}

PROMPT_WORDS = "This is a photo of a an the."


def canonical_text(text: str) -> str:
    """What SiglipTokenizer feeds SentencePiece: lower case, no punctuation, single spaces."""
    text = re.sub(r"[^\w\s]", "", text.lower())
    return " ".join(text.split())


def train_sentencepiece(sentences: list[str], out_dir: Path, vocab_size: int = 256) -> Path:
    """A BPE SentencePiece model with SigLIP's special ids (pad 0, eos 1, unk 2).

    BPE, because on a few hundred captions unigram training stops at ~50 pieces
    (letters), while BPE learns whole words: short sequences, meaningful tokens.
    Trained on canonical text, as the tokenizer will present it.
    """
    import sentencepiece as spm

    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / "spiece"
    corpus = [canonical_text(s) for s in list(sentences) + [PROMPT_WORDS]]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus * max(1, 2000 // max(1, len(corpus)))),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="bpe",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        hard_vocab_limit=False,  # a small caption set cannot fill a large vocabulary
        character_coverage=1.0,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


def build_siglip(out_dir: str | Path, captions: list[str], preset: str = "tiny", vocab_size: int = 256,
                 text_length: int = 64, seed: int = 0) -> Path:
    """Random-weight SigLIP with a tokenizer learned from `captions`, saved with save_pretrained."""
    from findbox.env import ensure_offline
    ensure_offline()  # transformers reads the offline variables at import
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor, SiglipTokenizer

    if preset not in SIGLIP_PRESETS:
        raise ValueError(f"preset: expected one of {', '.join(SIGLIP_PRESETS)}, got {preset!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        spm_file = train_sentencepiece(captions, Path(tmp), vocab_size)
        tokenizer = SiglipTokenizer(vocab_file=str(spm_file), model_max_length=text_length)
        tokenizer.save_pretrained(str(out_dir))
    p = SIGLIP_PRESETS[preset]
    tower = {k: p[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")}
    config = SiglipConfig(
        text_config=dict(tower, vocab_size=len(tokenizer), max_position_embeddings=text_length,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=None),
        vision_config=dict(tower, image_size=p["image_size"], patch_size=p["patch_size"]),
    )
    torch.manual_seed(seed)
    model = SiglipModel(config)
    with torch.no_grad():  # the SigLIP paper's init (t' = log 10, b = -10): transformers starts at 1 and 0,
        model.logit_scale.fill_(math.log(10.0))  # where logits stay in [-1, 1] and learning crawls
        model.logit_bias.fill_(-10.0)
    model.save_pretrained(str(out_dir))
    image_processor = SiglipImageProcessor(size={"height": p["image_size"], "width": p["image_size"]})
    processor = SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    processor.save_pretrained(str(out_dir))
    # From scratch, the text tower learns faster when padding is masked out; recorded so that
    # training and serving agree (pretrained SigLIP folders run unmasked, as they were trained).
    (out_dir / "findbox_scorer.json").write_text('{"text_attention_mask": true}\n')
    return out_dir


def build_yolo(out_path: str | Path, model_yaml: str = "yolov8n.yaml", num_classes: int = 1, seed: int = 0) -> Path:
    """Random-weight ultralytics detector saved as a .pt checkpoint that `YOLO(path)` loads."""
    from findbox.env import ensure_offline
    ensure_offline()  # ultralytics reads the offline variables at import
    from ultralytics import YOLO

    torch.manual_seed(seed)
    model = YOLO(model_yaml, task="detect")
    if num_classes != model.model.yaml.get("nc"):
        from ultralytics.nn.tasks import DetectionModel

        model.model = DetectionModel(model_yaml, nc=num_classes, verbose=False)
    model.model.names = {i: f"class{i}" if num_classes > 1 else "object" for i in range(num_classes)}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(out_path))
    return out_path


def build_compact_upscaler(out_path: str | Path, num_feat: int = 64, num_conv: int = 32, scale: int = 4,
                           key: str = "params", seed: int = 0) -> Path:
    """Random-weight Real-ESRGAN SRVGGNetCompact (realesr-general-x4v3 sizes by default), saved as {key: state_dict}."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_conv=num_conv, upscale=scale, act_type="prelu")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: net.state_dict()}, out_path)
    return out_path


# Tiny open_clip architectures in open_clip's model-config format (written to a .json the
# scorer spec names). "tiny-clip" is a CLIP (softmax, causal text, OpenAI BPE bundled with
# open_clip); "tiny-siglip" mirrors ViT-B-16-SigLIP's text tower (no causal mask, last-token
# pooling, projection bias, logit bias) whose tokenizer comes from a local folder.
_TINY_VISION = {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16}
OPEN_CLIP_TINY: dict[str, dict] = {
    "tiny-clip": {"embed_dim": 16, "vision_cfg": _TINY_VISION,
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}},
    "tiny-siglip": {"embed_dim": 32, "init_logit_bias": -10, "custom_text": True, "vision_cfg": _TINY_VISION,
                    "text_cfg": {"context_length": 64, "vocab_size": 256, "hf_tokenizer_name": "timm/ViT-B-16-SigLIP",
                                 "tokenizer_kwargs": {"clean": "canonicalize"}, "width": 32, "heads": 2, "layers": 2,
                                 "mlp_ratio": 2.0,  # build_siglip's tiny text tower: 64 = 2 * 32
                                 "no_causal_mask": True, "proj_bias": True, "pool_type": "last",
                                 "norm_kwargs": {"eps": 1e-6}}},
}


def write_clip_bpe(out_dir: Path) -> tuple[Path, Path]:
    """OpenAI CLIP's BPE (shipped inside open_clip) as the vocab.json + merges.txt CLIPTokenizer reads."""
    import gzip
    import importlib.util
    import json

    # GPT-2's byte alphabet, which CLIP's BPE is written in: printable bytes as themselves,
    # the other 68 bytes as chr(256 + k), in that order (CLIP's first 256 token ids)
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = [chr(b) for b in printable] + [chr(256 + k) for k in range(256 - len(printable))]

    spec = importlib.util.find_spec("open_clip")  # the file only: importing open_clip takes seconds
    bpe = Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return out_dir / "vocab.json", out_dir / "merges.txt"


def build_clip(out_dir: str | Path, preset: str = "tiny", projection_dim: int = 16, seed: int = 0) -> Path:
    """Random-weight transformers CLIPModel with OpenAI's CLIP tokenizer, saved with save_pretrained."""
    from findbox.env import ensure_offline
    ensure_offline()  # transformers reads the offline variables at import
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    if preset not in SIGLIP_PRESETS:
        raise ValueError(f"preset: expected one of {', '.join(SIGLIP_PRESETS)}, got {preset!r}")
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = write_clip_bpe(Path(tmp))
        tokenizer = CLIPTokenizer(vocab=str(vocab), merges=str(merges), model_max_length=77)
    p = SIGLIP_PRESETS[preset]
    tower = {k: p[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")}
    config = CLIPConfig(
        text_config=dict(tower, vocab_size=len(tokenizer), max_position_embeddings=77,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(tower, image_size=p["image_size"], patch_size=p["patch_size"]),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(str(out_dir))
    size = p["image_size"]
    image_processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(str(out_dir))
    return out_dir


def build_open_clip(out_dir: str | Path, arch: str = "tiny-clip", captions: list[str] | None = None,
                    seed: int = 0) -> str:
    """Random-weight open_clip model saved as a state-dict file; returns its `--scorer` spec.

    arch: a name in OPEN_CLIP_TINY (its config is written beside the weights) or a built-in
    open_clip architecture. Architectures with hub tokenizers get a SentencePiece tokenizer
    folder learned from `captions`, like build_siglip's.
    """
    import json

    from findbox.env import require
    require("open_clip", "zoo")
    import open_clip

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = arch
    if arch in OPEN_CLIP_TINY:
        config_file = out_dir / f"{arch}.json"
        config_file.write_text(json.dumps(OPEN_CLIP_TINY[arch], indent=2))
        open_clip.add_model_config(config_file)
        arch = str(config_file)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None, pretrained_image=False, pretrained_text=False)
    weights = out_dir / f"{name}.bin"
    torch.save(model.state_dict(), weights)
    text_cfg = open_clip.get_model_config(name)["text_cfg"]
    if not (text_cfg.get("hf_tokenizer_name") or "siglip" in name.lower()):
        return f"open_clip:{arch}:{weights}"
    from transformers import SiglipTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        spm_file = train_sentencepiece(captions or ["a photo"], Path(tmp), min(256, text_cfg["vocab_size"]))
        tokenizer = SiglipTokenizer(vocab_file=str(spm_file), model_max_length=text_cfg["context_length"])
        tokenizer.save_pretrained(str(out_dir / "tokenizer"))
    return f"open_clip:{arch}:{weights}:{out_dir / 'tokenizer'}"
