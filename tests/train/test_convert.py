import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from findbox.cli import main as cli_main
from findbox.score.transformers import TransformersScorer
from findbox.train.convert import clean_key, clean_state_dict, convert_checkpoint


@pytest.mark.parametrize(
    "key, expected",
    [
        ("_orig_mod.vision_model.head.probe", "vision_model.head.probe"),
        ("module.text_model.final_layer_norm.weight", "text_model.final_layer_norm.weight"),
        ("module._orig_mod.logit_scale", "logit_scale"),
        ("_fsdp_wrapped_module.vision_model.encoder.layers.0._fsdp_wrapped_module._checkpoint_wrapped_module.mlp.fc1.weight",
         "vision_model.encoder.layers.0.mlp.fc1.weight"),
        ("text_model.module_list.0.weight", "text_model.module_list.0.weight"),  # only whole segments go
        ("logit_bias", "logit_bias"),
    ],
)
def test_clean_key(key, expected):
    assert clean_key(key) == expected


def test_clean_state_dict_rejects_collisions_and_flat_params():
    with pytest.raises(ValueError, match="both clean to 'a.b'"):
        clean_state_dict({"module.a.b": torch.zeros(1), "a.b": torch.zeros(1)})
    with pytest.raises(ValueError, match="flat parameters"):
        clean_state_dict({"_fsdp_wrapped_module._flat_param": torch.zeros(4)})


def prefixed(state):
    """What a compiled, FSDP-wrapped, DDP-wrapped model saves."""
    out = {}
    for i, (k, v) in enumerate(state.items()):
        if k.startswith("vision_model.encoder.layers."):
            head, rest = k.split(".layers.", 1)
            idx, tail = rest.split(".", 1)
            k = f"{head}.layers.{idx}._fsdp_wrapped_module._checkpoint_wrapped_module.{tail}"
        out[("module._orig_mod." if i % 2 else "_orig_mod.") + k] = v.clone()
    return out


def test_convert_prefixed_bin_with_config_from(tiny_models, tmp_path, capsys):
    original = TransformersScorer.from_pretrained(tiny_models["scorer"]).model.state_dict()
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save({"state_dict": prefixed(original)}, ckpt / "pytorch_model.bin")
    out = tmp_path / "clean"
    assert cli_main(["convert-checkpoint", str(ckpt / "pytorch_model.bin"), str(out),
                     "--config-from", str(tiny_models["scorer"])]) == 0
    assert json.loads(capsys.readouterr().out)["tensors"] == len(original)
    saved = load_file(str(out / "model.safetensors"))
    assert not [k for k in saved if "_orig_mod" in k or k.startswith("module.") or "wrapped" in k]
    # transformers AutoModel + tokenizer + processor
    loaded = TransformersScorer.from_pretrained(out).model.state_dict()
    assert all(torch.equal(loaded[k], original[k]) for k in original)


def test_convert_folder_with_outer_module_name(tiny_models, tmp_path):
    """A folder (config beside the weights) whose keys carry a wrapper's attribute, e.g. 'model.'."""
    src = tmp_path / "src"
    src.mkdir()
    for f in tiny_models["scorer"].iterdir():
        if f.suffix != ".safetensors":
            (src / f.name).write_bytes(f.read_bytes())
    original = TransformersScorer.from_pretrained(tiny_models["scorer"]).model.state_dict()
    save_file({"model._orig_mod." + k: v.contiguous() for k, v in original.items()}, str(src / "model.safetensors"))
    summary = convert_checkpoint(src, tmp_path / "clean")
    assert "spiece.model" in summary["copied"]
    loaded = TransformersScorer.from_pretrained(tmp_path / "clean").model.state_dict()
    assert all(torch.equal(loaded[k], original[k]) for k in original)


def test_convert_errors(tiny_models, tmp_path, capsys):
    torch.save({"_orig_mod.foo.weight": torch.zeros(2)}, tmp_path / "w.pt")
    assert cli_main(["convert-checkpoint", str(tmp_path / "w.pt"), str(tmp_path / "o")]) == 2
    assert "config: expected config.json" in capsys.readouterr().err
    assert cli_main(["convert-checkpoint", str(tmp_path / "w.pt"), str(tmp_path / "o"),
                     "--config-from", str(tiny_models["scorer"])]) == 2
    assert "missing" in capsys.readouterr().err and not (tmp_path / "o" / "model.safetensors").exists()
    assert cli_main(["convert-checkpoint", str(tmp_path / "nope.pt"), str(tmp_path / "o")]) == 2
