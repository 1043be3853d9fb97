"""Whether the text tower sees an attention mask follows how the weights were trained."""

import json

import pytest

from findbox.testing.builders import build_siglip
from findbox.score.transformers import SCORER_SETTINGS_FILE, TransformersScorer


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_siglip(tmp_path_factory.mktemp("s") / "siglip", ["grey missile", "red drone"], preset="tiny")


def test_from_scratch_models_record_their_mask(folder):
    assert json.loads((folder / SCORER_SETTINGS_FILE).read_text()) == {"text_attention_mask": True}
    scorer = TransformersScorer.from_pretrained(folder)
    assert set(scorer.tokenize(["grey missile"])) == {"input_ids", "attention_mask"}


def test_a_plain_siglip_folder_runs_unmasked_as_siglip_was_trained(folder):
    (folder / SCORER_SETTINGS_FILE).unlink()
    try:
        scorer = TransformersScorer.from_pretrained(folder)
        assert set(scorer.tokenize(["grey missile"])) == {"input_ids"}
        masked = TransformersScorer.from_pretrained(folder)
        masked.text_attention_mask = True
        # the mask changes the text embedding: using the wrong one would silently change scores
        assert not masked.embed_texts(["grey missile"]).allclose(scorer.embed_texts(["grey missile"]), atol=1e-4)
    finally:
        (folder / SCORER_SETTINGS_FILE).write_text('{"text_attention_mask": true}\n')


def test_unknown_settings_key_is_an_error(tmp_path, folder):
    import shutil

    copy = shutil.copytree(folder, tmp_path / "copy")
    (copy / SCORER_SETTINGS_FILE).write_text('{"text_mask": false}')
    with pytest.raises(ValueError, match="text_mask"):
        TransformersScorer.from_pretrained(copy)
