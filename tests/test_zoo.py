"""Scorer families (transformers SigLIP / SigLIP 2 / CLIP, open_clip) behind one interface.

Each family is built with random weights in its real file format, taught one good
pairing in a few steps, saved, reloaded through `findbox.score.load_scorer`, and
must then score the good pairing above the bad ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from findbox.testing.builders import build_clip, build_open_clip, build_siglip
from findbox.images import decode_b64, decode_image, encode_jpeg_b64
from findbox.score.base import Scorer
from findbox.score import ScorerFamily, ScorerSpec, load_scorer, parse_scorer_spec
from tests.conftest import CAPTIONS, TINY_DETECTION, ServerProcess, make_image, tiny_serve_args

RED = np.zeros((24, 40, 3), np.uint8) + np.array([220, 30, 30], np.uint8)
BLUE = np.zeros((30, 18, 3), np.uint8) + np.array([30, 40, 210], np.uint8)
PAIRS = ["red helicopter", "blue drone"]  # RED <-> PAIRS[0], BLUE <-> PAIRS[1]


def build_siglip2_naflex(out_dir: Path) -> Path:
    """A tiny SigLIP 2 NaFlex folder: model_type siglip2, Siglip2ImageProcessor, Siglip2Tokenizer.

    AutoTokenizer gives siglip2 folders a Siglip2Tokenizer (Gemma BPE in tokenizer.json,
    lowercasing, left padding) whatever tokenizer_config names, so the folder gets one:
    a character-level BPE (no merges) over the captions and the prompt.
    """
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Tokenizer

    texts = CAPTIONS + PAIRS + ["this is a photo of ."]
    chars = sorted({ch for text in texts for ch in text.lower().replace(" ", "▁")})
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", *chars])}
    tokenizer = Siglip2Tokenizer(vocab=vocab, merges=[], model_max_length=64)
    tokenizer.save_pretrained(str(out_dir))
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = Siglip2Config(
        text_config=dict(tower, vocab_size=len(tokenizer), max_position_embeddings=64, pad_token_id=0,
                         eos_token_id=1, bos_token_id=2),
        vision_config=dict(tower, patch_size=8, num_patches=16),
    )
    torch.manual_seed(0)
    Siglip2Model(config).save_pretrained(str(out_dir))
    Siglip2ImageProcessor(patch_size=8, max_num_patches=16).save_pretrained(str(out_dir))
    return out_dir


BUILDERS = {
    "siglip": lambda d: str(build_siglip(d, CAPTIONS + PAIRS, preset="tiny")),
    "siglip2-naflex": lambda d: str(build_siglip2_naflex(d)),
    "clip": lambda d: str(build_clip(d, preset="tiny")),
    "open_clip-clip": lambda d: build_open_clip(d, "tiny-clip"),
    "open_clip-siglip": lambda d: build_open_clip(d, "tiny-siglip", CAPTIONS + PAIRS),
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict[str, str]:
    """family -> scorer spec, built once."""
    root = tmp_path_factory.mktemp("zoo")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine: one thread is ~100x faster than two fighting for cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def teach_pairs(scorer: Scorer, steps: int = 30) -> None:
    """A few steps of symmetric contrastive loss on (RED, PAIRS[0]), (BLUE, PAIRS[1]) through the scorer's own paths."""
    model = scorer.model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    target = torch.arange(2)
    pixels = scorer.preprocess([RED, BLUE])
    for _ in range(steps):
        image = torch.nn.functional.normalize(scorer.image_features(pixels), dim=-1)
        text = torch.nn.functional.normalize(scorer.text_features(PAIRS), dim=-1)
        logits = image @ text.T * 10.0
        loss = torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def save_scorer(scorer: Scorer, spec: str) -> None:
    """Write the taught weights back in the family's own format, over the built files."""
    parsed = parse_scorer_spec(spec)
    if parsed.family == ScorerFamily.OPEN_CLIP:
        torch.save(scorer.model.state_dict(), parsed.weights)
    else:
        scorer.model.save_pretrained(parsed.path)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_family_scores_the_good_pairing_above_bad_ones(zoo, family, tmp_path):
    spec = zoo[family]
    scorer = load_scorer(spec)
    teach_pairs(scorer)
    save_scorer(scorer, spec)

    reloaded = load_scorer(spec)  # from the files alone, through the registry
    image_emb = reloaded.embed_images([RED, BLUE])
    text_emb = reloaded.embed_texts(PAIRS)
    assert image_emb.shape == (2, reloaded.embed_dim) and text_emb.shape == (2, reloaded.embed_dim)
    assert torch.allclose(image_emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    logits = reloaded.score(image_emb, text_emb)
    assert logits[0, 0] > logits[1, 0] and logits[1, 1] > logits[0, 1]  # per caption: its crop wins
    assert logits[0, 0] > logits[0, 1] and logits[1, 1] > logits[1, 0]  # per crop: its caption wins
    assert reloaded.embed_texts(PAIRS[:1]).shape == (1, reloaded.embed_dim)
    assert reloaded.text_cache_hits >= 1  # the LRU cache is shared by every family


@pytest.mark.parametrize("family, loss, prompt", [
    ("siglip", "sigmoid", "This is a photo of {}."),
    ("siglip2-naflex", "sigmoid", "This is a photo of {}."),
    ("clip", "softmax", "a photo of {}."),
    ("open_clip-clip", "softmax", "a photo of {}."),
    ("open_clip-siglip", "sigmoid", "This is a photo of {}."),
])
def test_family_defaults(zoo, family, loss, prompt):
    scorer = load_scorer(zoo[family])
    assert scorer.info["loss"] == loss and scorer.prompt == prompt
    assert load_scorer(zoo[family], prompt="{} here").prompt == "{} here"


def test_clip_scores_one_caption_by_raw_scaled_cosine(zoo):
    """A softmax over one caption is always 1.0; findbox ranks by the scaled cosine instead."""
    scorer = load_scorer(zoo["clip"])
    crops = [make_image(seed)[10:60, 20:90] for seed in range(4)]
    logits = scorer.score(scorer.embed_images(crops), scorer.embed_texts([CAPTIONS[0]]))[:, 0]
    assert logits.shape == (4,) and np.ptp(logits) > 1e-4 and not np.allclose(logits, 1.0)
    with torch.no_grad():
        out = scorer.model(pixel_values=scorer.preprocess(crops), **scorer.tokenize([CAPTIONS[0]]))
    np.testing.assert_allclose(logits, out.logits_per_image[:, 0].numpy(), rtol=1e-5, atol=1e-5)


def test_clip_embedding_is_the_projected_one(zoo):
    """get_image_features' pooler_output in transformers 5 is projected; the Scorer must use it."""
    scorer = load_scorer(zoo["clip"])
    config = scorer.model.config
    assert scorer.embed_dim == config.projection_dim != config.vision_config.hidden_size
    with torch.no_grad():
        out = scorer.model(pixel_values=scorer.preprocess([RED]), **scorer.tokenize(PAIRS))
    torch.testing.assert_close(scorer.embed_images([RED]), out.image_embeds, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scorer.embed_texts(PAIRS), out.text_embeds, rtol=1e-5, atol=1e-6)


def test_siglip2_naflex_matches_its_processor(zoo):
    """Our square full-grid patches equal Siglip2ImageProcessor's for an image already at the grid size."""
    from transformers import Siglip2ImageProcessor

    scorer = load_scorer(zoo["siglip2-naflex"])
    assert scorer.preprocess.size_hw == (32, 32)  # isqrt(16 patches) * 8 px
    image = make_image(3, 32, 32)
    inputs = Siglip2ImageProcessor.from_pretrained(zoo["siglip2-naflex"])(images=[image], return_tensors="pt")
    with torch.no_grad():
        expected = torch.nn.functional.normalize(scorer.model.get_image_features(**inputs).pooler_output, dim=-1)
    torch.testing.assert_close(scorer.embed_images([image]), expected, rtol=1e-5, atol=1e-6)


def test_siglip_text_weights_map_onto_open_clip(zoo, tmp_path):
    """One set of SigLIP text weights through transformers and open_clip: the same embeddings when
    transformers gets no attention mask, as SigLIP was trained (open_clip passes none). transformers
    5's SiglipTokenizer returns a mask, and passing it changes the embeddings (docs/ZOO.md)."""
    import copy
    import json

    import open_clip

    from findbox.testing.builders import OPEN_CLIP_TINY
    from findbox.score.preprocess import format_prompt
    from findbox.score.transformers import _features
    from findbox.score.open_clip import siglip_state_dict_to_open_clip

    hf = load_scorer(zoo["siglip"])
    config = copy.deepcopy(OPEN_CLIP_TINY["tiny-siglip"])
    config["text_cfg"]["vocab_size"] = hf.model.config.text_config.vocab_size
    arch = tmp_path / "tiny-siglip-hf.json"
    arch.write_text(json.dumps(config))
    open_clip.add_model_config(arch)
    model = open_clip.create_model(arch.stem, pretrained=None)
    mapped = siglip_state_dict_to_open_clip(hf.model.state_dict())
    text = {k: v for k, v in mapped.items() if k.startswith(("text.", "logit_"))}
    assert not [k for k in model.load_state_dict(text, strict=False).missing_keys if k.startswith("text.")]
    torch.save(model.state_dict(), tmp_path / "weights.bin")
    oc = load_scorer(f"open_clip:{arch}:{tmp_path / 'weights.bin'}:{zoo['siglip']}")

    tokens = hf.tokenizer([format_prompt(hf.prompt, c) for c in CAPTIONS], padding="max_length", max_length=64,
                          return_tensors="pt")
    with torch.no_grad():
        unmasked = _features(hf.model.get_text_features(input_ids=tokens["input_ids"]))
        masked = _features(hf.model.get_text_features(**tokens))
    unmasked, masked = (torch.nn.functional.normalize(e, dim=-1) for e in (unmasked, masked))
    # transformers' tanh GELU vs open_clip's exact GELU leaves ~1e-4
    torch.testing.assert_close(oc.embed_texts(CAPTIONS), unmasked, atol=2e-3, rtol=0)
    assert (masked - unmasked).abs().max() > 1e-2


def test_clip_folder_tokenizer_matches_open_clip(zoo):
    """The CLIP BPE written by build_clip tokenizes exactly as open_clip's bundled tokenizer."""
    import open_clip

    hf = load_scorer(zoo["clip"]).tokenize(["red, white, and blue light aircraft"])["input_ids"][0].tolist()
    oc = open_clip.get_tokenizer("ViT-B-32")(["a photo of red, white, and blue light aircraft."])[0].tolist()
    eot = 49407  # both pool at the end of text; padding after it is never read, so findbox pads a CLIP
    # batch to its longest caption (here: none), open_clip to 77
    assert hf == oc[: oc.index(eot) + 1] and len(oc) == 77


@pytest.mark.parametrize("spec, expected", [
    ("models/siglip", ScorerSpec(ScorerFamily.TRANSFORMERS, path="models/siglip")),
    ("transformers:models/clip", ScorerSpec(ScorerFamily.TRANSFORMERS, path="models/clip")),
    ("open_clip:ViT-H-14:/w/h14.bin", ScorerSpec(ScorerFamily.OPEN_CLIP, arch="ViT-H-14", weights="/w/h14.bin")),
    ("open_clip:ViT-B-16-SigLIP:/w/b.bin:/w/tok",
     ScorerSpec(ScorerFamily.OPEN_CLIP, arch="ViT-B-16-SigLIP", weights="/w/b.bin", tokenizer="/w/tok")),
])
def test_parse_scorer_spec(spec, expected):
    assert parse_scorer_spec(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("open_clip:ViT-B-32", "open_clip:ARCH:WEIGHTS"),
    ("open_clip::w.bin", "open_clip:ARCH:WEIGHTS"),
    ("missing.toml", "not a file"),
])
def test_parse_scorer_spec_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_scorer_spec(spec)


def test_scorer_toml(zoo, tmp_path):
    spec = parse_scorer_spec(zoo["open_clip-siglip"])
    folder = tmp_path / "toml"
    shutil.copytree(Path(spec.weights).parent, folder)
    toml = folder / "scorer.toml"
    toml.write_text(f'arch = "tiny-siglip.json"\nweights = "tiny-siglip.bin"\ntokenizer = "tokenizer"\n'
                    f'prompt = "a {{}} seen from afar"\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n')
    scorer = load_scorer(toml)
    assert scorer.info["kind"] == "open_clip" and scorer.prompt == "a {} seen from afar"
    assert scorer.preprocess.mean == (0.5, 0.5, 0.5)
    assert load_scorer(toml, prompt="{}").prompt == "{}"  # --prompt beats the file
    toml.write_text('arch = "tiny-siglip.json"\nweights = "tiny-siglip.bin"\ntokeniser = "tokenizer"\n')
    with pytest.raises(ValueError, match="did you mean 'tokenizer'"):
        load_scorer(toml)
    toml.write_text(f'path = "{zoo["clip"]}"\nweights = "x.bin"\n')
    with pytest.raises(ValueError, match="open_clip scorers only"):
        load_scorer(toml)


def test_open_clip_never_reaches_for_the_hub(zoo, tmp_path):
    spec = parse_scorer_spec(zoo["open_clip-siglip"])
    with pytest.raises(ValueError, match="tokenizer from the hub"):
        load_scorer(f"open_clip:{spec.arch}:{spec.weights}")
    with pytest.raises(ValueError, match="local open_clip weights file"):
        load_scorer("open_clip:ViT-B-32:openai")  # a pretrained tag would download
    with pytest.raises(ValueError, match="open_clip architecture"):
        load_scorer(f"open_clip:No-Such-Arch:{spec.weights}")
    with pytest.raises(ValueError, match="could not load"):
        load_scorer(f"open_clip:ViT-B-32:{spec.weights}")  # weights of another architecture


def identify(server: ServerProcess, captions: list[str]) -> list[list[float]]:
    b64 = encode_jpeg_b64(make_image(0))
    body = {"instances": [{"key": i, "caption": c, "b64": b64} for i, c in enumerate(captions)]}
    r = httpx.post(server.url + "/identify", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def test_serve_other_scorer_families_and_fused_detectors(tiny_models, zoo, tmp_path, monkeypatch):
    """Real servers: `--scorer open_clip:ARCH:FILE`, and `--scorer <CLIP folder>` with two fused
    `--detector`s, which must answer as an in-process pipeline on the same ensemble does."""
    from concurrent.futures import ThreadPoolExecutor

    from findbox.testing.builders import build_yolo
    from findbox.detect.ensemble import EnsembleDetector
    from findbox.factory import load_pipeline

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    second = build_yolo(tmp_path / "second.pt", "yolov8n.yaml", seed=1)
    open_clip_args = tiny_serve_args(tiny_models, upscaler=False)
    open_clip_args[open_clip_args.index("--scorer") + 1] = zoo["open_clip-clip"]
    clip_args = tiny_serve_args(tiny_models, upscaler=False) + ["--detector", str(second)]
    clip_args[clip_args.index("--scorer") + 1] = zoo["clip"]
    with ThreadPoolExecutor(2) as pool:  # both start at once: most of a start is imports
        starts = [pool.submit(ServerProcess, args) for args in (open_clip_args, clip_args)]
        servers = [start.result() for start in starts]
    try:
        open_clip_predictions = identify(servers[0], CAPTIONS[:4])
        clip_predictions = identify(servers[1], CAPTIONS[:2])
    finally:
        for server in servers:
            server.stop()
    assert len(open_clip_predictions) == 4 and all(len(p) == 4 for p in open_clip_predictions)

    pipeline = load_pipeline(detector=[str(tiny_models["detector"]), str(second)], scorer=zoo["clip"],
                             no_upscaler=True, device="cpu", detection=dict(TINY_DETECTION))
    assert isinstance(pipeline.detector, EnsembleDetector)
    image = decode_image(decode_b64(encode_jpeg_b64(make_image(0))))  # what the server decoded
    expected = [g.ltwh for g in pipeline.ground_captions(image, CAPTIONS[:2])]
    np.testing.assert_allclose(np.array(clip_predictions), np.array(expected), atol=0.01)


@pytest.mark.parametrize("family", ["siglip2-naflex", "clip"])
def test_small_crop_input_on_other_transformers_families(zoo, family):
    """`--small-crop-input`: SigLIP 2 NaFlex runs the smaller patch grid natively, CLIP interpolates its
    position embeddings; crops above the side are scored exactly as without it."""
    scorer = load_scorer(zoo[family])
    small, big = RED[:14, :16], make_image(4, 48, 40)
    plain = scorer.embed_images([small, big])
    assert 16 in scorer.input_sizes()
    scorer.set_small_input(16)
    mixed = scorer.embed_images([small, big])
    torch.testing.assert_close(mixed[1], plain[1])
    assert torch.isfinite(mixed[0]).all() and float(mixed[0].norm()) == pytest.approx(1.0, abs=1e-5)
    assert not torch.allclose(mixed[0], plain[0], atol=1e-4)


def test_open_clip_has_no_small_crop_input(zoo):
    scorer = load_scorer(zoo["open_clip-clip"])
    with pytest.raises(ValueError, match=r"small_crop_input: expected 0 \(off\) or one of none"):
        scorer.set_small_input(16)
