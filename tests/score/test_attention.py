"""Less work per crop and caption without other answers: fused attention (SDPA) in the towers, and
caption batches padded to their longest where the text tower allows it (CLIP), not where it does not (SigLIP)."""

import pytest
import torch

from findbox.score.transformers import TransformersScorer

from ..conftest import CAPTIONS

SHORT = ["yellow drone", "grey missile", "red and white helicopter"]  # far below max_length


def eager_copy(scorer: TransformersScorer, folder) -> TransformersScorer:
    """The same folder's model with transformers' eager attention, in the same scorer settings."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    return TransformersScorer(model, scorer.tokenizer, scorer.preprocess, scorer.prompt, scorer.max_text_length,
                              scorer.device, text_attention_mask=scorer.text_attention_mask)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    from findbox.testing.builders import build_clip

    return build_clip(tmp_path_factory.mktemp("clip") / "clip", preset="tiny")


@pytest.mark.parametrize("which", ["siglip", "clip"])
def test_fused_attention_gives_the_eager_embeddings(which, tiny_models, clip_folder):
    folder = tiny_models["scorer"] if which == "siglip" else clip_folder
    fused = TransformersScorer.from_pretrained(folder)
    assert fused.info["attention"] == "sdpa"
    eager = eager_copy(fused, folder)
    pixels = torch.rand(4, 3, *fused.preprocess.size_hw, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(fused.image_features(pixels), eager.image_features(pixels), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(fused.text_features(CAPTIONS), eager.text_features(CAPTIONS), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("which", ["tiny", "demo"])
def test_siglip_needs_max_length_padding(which, tiny_models):
    """SigLIP pools the last position: cut to the longest caption, that position is another token and the
    embedding changes, with the text attention mask (the tiny scorer) or without it (the demo's). So
    SigLIP batches stay padded to max_length."""
    from findbox.bundle import bundled_paths

    scorer = TransformersScorer.from_pretrained(tiny_models["scorer"] if which == "tiny" else
                                                bundled_paths()["scorer"])
    assert scorer.tokenize(SHORT)["input_ids"].shape == (3, scorer.max_text_length)
    with torch.no_grad():
        padded = scorer.token_features(scorer.tokenize(SHORT))
        longest = scorer.token_features(scorer.tokenize(SHORT, padding="longest"))
    assert scorer.tokenize(SHORT, padding="longest")["input_ids"].shape[1] < scorer.max_text_length
    assert (padded - longest).abs().max() > 1e-2


def test_clip_pads_a_batch_to_its_longest_caption_with_the_same_embeddings(clip_folder):
    """CLIP's text tower is causal and pools at the first EOS: padding after it changes nothing."""
    scorer = TransformersScorer.from_pretrained(clip_folder)
    tokens = scorer.tokenize(SHORT)
    assert tokens["input_ids"].shape[1] < scorer.max_text_length  # 77
    with torch.no_grad():
        torch.testing.assert_close(scorer.token_features(tokens),
                                   scorer.token_features(scorer.tokenize(SHORT, padding="max_length")),
                                   atol=1e-5, rtol=1e-4)


def test_a_model_class_without_fused_attention_loads_with_eager(tiny_models, monkeypatch, caplog):
    """A class that declares no SDPA path (transformers refuses attn_implementation="sdpa") loads eager."""
    from transformers import SiglipModel

    monkeypatch.setattr(SiglipModel, "_supports_sdpa", False)
    with caplog.at_level("INFO", logger="findbox"):
        scorer = TransformersScorer.from_pretrained(tiny_models["scorer"])
    assert scorer.info["attention"] == "eager" and "no fused attention for this model class" in caplog.text
