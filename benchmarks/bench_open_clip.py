"""The same SigLIP through transformers and through open_clip: equal outputs? which is faster?

A random-weight transformers SiglipModel at siglip-base-patch16-224's sizes (the real
32000-token vocabulary, text length 64) has its weights copied key by key into open_clip's
`ViT-B-16-SigLIP` (timm vision tower with a MAP head, open_clip text tower). Both are then
loaded the way `findbox serve --scorer` loads them (`findbox.score.load_scorer`: a
save_pretrained folder, and `open_clip:ViT-B-16-SigLIP:weights.bin:tokenizer_dir`) and:

1. compared on the same crops and captions (embeddings, logits), once with the activation
   each library uses (transformers: tanh-approximate GELU as big_vision; timm / open_clip:
   exact GELU), once with transformers switched to exact GELU, which isolates the
   weight mapping, and once with the text attention_mask transformers 5's SiglipTokenizer
   returns (SigLIP was trained attending to its padding; open_clip passes no mask);
2. timed on a batch of crops (`Scorer.embed_images`: preprocess + image tower), the image
   tower alone on ready pixels, and a batch of captions (`embed_texts`, cache cleared).

Prints markdown tables: the checks, then one timing row per library (fp32; --device to move).

    .venv/bin/python benchmarks/bench_open_clip.py --crops 32 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from findbox.env import ensure_offline

ensure_offline()  # before open_clip and transformers are imported
from findbox.testing.builders import SIGLIP_PRESETS, train_sentencepiece
from findbox.score import load_scorer
from findbox.score.open_clip import siglip_state_dict_to_open_clip

CAPTIONS = ["grey missile", "red and white helicopter", "red, white, and blue light aircraft",
            "green and brown camouflage fighter jet", "yellow drone", "black cargo aircraft"]
ARCH = "ViT-B-16-SigLIP"


def build_hf_siglip(out_dir: Path, hidden_act: str, seed: int = 0) -> Path:
    """siglip-base-patch16-224 sizes, random weights, a caption-trained SentencePiece tokenizer."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor, SiglipTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    spm_file = train_sentencepiece(CAPTIONS, out_dir / "spm", 256)
    tokenizer = SiglipTokenizer(vocab_file=str(spm_file), model_max_length=64)
    p = SIGLIP_PRESETS["base"]
    tower = {k: p[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")}
    tower["hidden_act"] = hidden_act
    config = SiglipConfig(
        text_config=dict(tower, vocab_size=32000, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None),
        vision_config=dict(tower, image_size=p["image_size"], patch_size=p["patch_size"]),
    )
    torch.manual_seed(seed)
    model = SiglipModel(config)
    with torch.no_grad():  # released SigLIP-B values: t ~ log(117), b ~ -12.9
        model.logit_scale.fill_(float(np.log(117.0)))
        model.logit_bias.fill_(-12.9)
    model.save_pretrained(str(out_dir))
    image_processor = SiglipImageProcessor(size={"height": p["image_size"], "width": p["image_size"]})
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(str(out_dir))
    return out_dir


def make_crops(n: int, seed: int = 0) -> list[np.ndarray]:
    """Crops of the sizes a 1520x870 frame's objects give: 20 to 200 px a side, any aspect."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (int(rng.integers(20, 200)), int(rng.integers(20, 200)), 3), dtype=np.uint8)
            for _ in range(n)]


def timed_interleaved(fns: dict[str, callable], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each fn, after one warm-up call each, alternating between them every
    repeat so that a busy machine's slow spells fall on all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def hf_text_embeddings(hf, mask: bool) -> torch.Tensor:
    """transformers text embeddings, with or without the attention_mask transformers 5's
    SiglipTokenizer returns (SigLIP was trained without one)."""
    from findbox.score.preprocess import format_prompt
    from findbox.score.transformers import _features

    tokens = hf.tokenizer([format_prompt(hf.prompt, c) for c in CAPTIONS], padding="max_length", truncation=True,
                          max_length=hf.max_text_length, return_tensors="pt").to(hf.device)
    inputs = dict(tokens) if mask else {"input_ids": tokens["input_ids"]}
    with torch.inference_mode():
        return torch.nn.functional.normalize(_features(hf.model.get_text_features(**inputs)).float(), dim=-1).cpu()


def compare(hf, oc, crops, mask: bool = False) -> dict[str, float]:
    hi, oi = hf.embed_images(crops), oc.embed_images(crops)
    ht, ot = hf_text_embeddings(hf, mask), oc.embed_texts(CAPTIONS)
    hl, ol = hf.score(hi, ht), oc.score(oi, ot)
    return {"image_1_minus_cos": float(1 - (hi * oi).sum(-1).min()),
            "text_1_minus_cos": float(1 - (ht * ot).sum(-1).min()),
            "logit_max_abs_diff": float(np.abs(hl - ol).max()),
            "same_argmax": float((hl.argmax(0) == ol.argmax(0)).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=int, default=32, help="crops per batch (the server's default crop_batch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--workdir", help="where to write the models (default: a temporary folder)")
    parser.add_argument("--out", help="also write the figures with the machine and commit (e.g. "
                                      "benchmarks/results/open_clip.json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import open_clip

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        crops = make_crops(args.crops)
        results = {}
        for act in ("gelu", "gelu_pytorch_tanh"):  # mapping check first, then the libraries as shipped
            hf_dir = build_hf_siglip(tmp / f"hf-{act}", act)
            hf = load_scorer(str(hf_dir), args.device)
            target = open_clip.create_model(ARCH, pretrained=None, pretrained_image=False, pretrained_text=False)
            mapped = siglip_state_dict_to_open_clip(hf.model.state_dict())
            missing = set(target.state_dict()) ^ set(mapped)
            assert not missing, f"unmapped keys: {sorted(missing)[:8]}"
            weights = tmp / f"oc-{act}.bin"
            torch.save(mapped, weights)
            oc = load_scorer(f"open_clip:{ARCH}:{weights}:{hf_dir}", args.device)
            assert oc.preprocess == hf.preprocess, (oc.preprocess, hf.preprocess)
            results[act] = compare(hf, oc, crops)
        results["masked"] = compare(hf, oc, crops, mask=True)
        print("| check | image: max 1 - cos | text: max 1 - cos | max abs logit diff | same argmax |")
        print("|---|---|---|---|---|")
        for act, label in (("gelu", "weights mapped, both exact GELU, no text mask"),
                           ("gelu_pytorch_tanh", "transformers tanh GELU vs open_clip exact GELU, no text mask"),
                           ("masked", "as above, transformers given its tokenizer's text attention_mask")):
            r = results[act]
            print(f"| {label} | {r['image_1_minus_cos']:.1e} | {r['text_1_minus_cos']:.1e} | "
                  f"{r['logit_max_abs_diff']:.2e} | {r['same_argmax']:.2f} |")

        pixels = hf.preprocess(crops).to(hf.device)
        libraries = {"transformers SiglipModel": hf, f"open_clip {ARCH}": oc}

        def texts(scorer):
            scorer._text_cache.clear()
            scorer.embed_texts(CAPTIONS)

        with torch.inference_mode():
            tower = timed_interleaved({n: (lambda s=s: s.image_features(pixels)) for n, s in libraries.items()},
                                      args.repeats)
        embed = timed_interleaved({n: (lambda s=s: s.embed_images(crops)) for n, s in libraries.items()}, args.repeats)
        text = timed_interleaved({n: (lambda s=s: texts(s)) for n, s in libraries.items()}, args.repeats)
        print()
        print(f"| SigLIP-B/16 224, {args.device}, fp32, {torch.get_num_threads()} threads, median (min) of "
              f"{args.repeats} | embed_images, {args.crops} crops (s) | image tower, {args.crops} (s) | "
              f"embed_texts, {len(CAPTIONS)} captions (s) |")
        print("|---|---|---|---|")
        for name in libraries:
            cells = [f"{statistics.median(t[name]):.3f} ({min(t[name]):.3f})" for t in (embed, tower, text)]
            print(f"| {name} | {' | '.join(cells)} |")
    if args.out:
        from common import write_result

        seconds = {stage: {name: {"median_s": statistics.median(t[name]), "min_s": min(t[name]), "runs_s": t[name]}
                           for name in libraries} for stage, t in (("embed_images", embed), ("image_tower", tower),
                                                                   ("embed_texts", text))}
        write_result(args.out, {"arch": ARCH, "device": args.device, "threads": torch.get_num_threads(),
                                "crops": args.crops, "captions": len(CAPTIONS), "repeats": args.repeats,
                                "outputs": results, "seconds": seconds})


if __name__ == "__main__":
    main()
