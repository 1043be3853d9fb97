"""`findbox convert-checkpoint`: a checkpoint saved through training wrappers -> a clean save_pretrained folder.

torch.compile saves keys as `_orig_mod.x`, DDP as `module.x`, FSDP and activation
checkpointing insert `_fsdp_wrapped_module.` / `_checkpoint_wrapped_module.` anywhere in
the key (the original's FSDP + dynamo run needed such a converter). The cleaned weights are
loaded strictly into the architecture named by config.json, so a folder is only written when
every key matches, then saved with `save_pretrained` beside the input's config, tokenizer and
processor files. FSDP "flat" parameters and sharded (distcp) checkpoints cannot be mapped
back to names: save a full state dict (`accelerator.get_state_dict`) instead.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from findbox.cli import add_options, config_from_args
from findbox.config import option

# Module names that wrappers insert into parameter paths; never real submodule names here.
WRAPPER_SEGMENTS = ("_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_fpw_module")
LEADING_WRAPPERS = ("module",)  # DDP / DataParallel: only ever the first segment
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module", "params", "params_ema")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
NOT_COPIED = {"config.json", "trainer_state.json", "model.safetensors.index.json", "pytorch_model.bin.index.json"}


def clean_key(key: str) -> str:
    """'module._orig_mod.vision_model._fsdp_wrapped_module.x' -> 'vision_model.x'."""
    parts = [p for p in key.split(".") if p not in WRAPPER_SEGMENTS]
    while parts and parts[0] in LEADING_WRAPPERS:
        parts = parts[1:]
    return ".".join(parts)


def clean_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every key through `clean_key`. Raises ValueError on FSDP flat parameters and on two keys
    that clean to the same name."""
    flat = [k for k in state_dict if "_flat_param" in k or k.startswith("_fsdp")]
    if flat:
        raise ValueError(
            f"checkpoint: holds FSDP flat parameters ({flat[0]!r}), whose names are lost; expected a full "
            "state dict (FSDP state_dict_type FULL_STATE_DICT, or accelerator.get_state_dict(model))"
        )
    clean: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state_dict.items():
        new = clean_key(key)
        if new in clean:
            raise ValueError(f"checkpoint: keys {origin[new]!r} and {key!r} both clean to {new!r}")
        clean[new], origin[new] = value, key
    return clean


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors/.bin/.pt file or of a folder's weight files (sharded ones too).

    A file holding {"state_dict": {...}} (or "model", "module", "params", ...) is unwrapped.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(
            p for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth") and not _is_training_state(p)
        )
        if not files:
            raise ValueError(f"checkpoint: expected weight files (*.safetensors, *.bin, *.pt) in {str(path)!r}, found none")
        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(load_state_dict(f))
        return state
    if not path.is_file():
        raise ValueError(f"checkpoint: expected a weight file or a folder, got {str(path)!r} (not found)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"checkpoint: could not read {str(path)!r} as a torch state dict: {exc}") from exc
    for _ in range(3):  # {"state_dict": {"model": {...}}} nests at most this deep in practice
        if isinstance(obj, dict) and not _is_tensor_dict(obj):
            inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not _is_tensor_dict(obj):
        raise ValueError(f"checkpoint: expected a dict of tensors in {str(path)!r}, got {type(obj).__name__}")
    return dict(obj)


def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _is_training_state(path: Path) -> bool:
    return path.stem in ("optimizer", "scheduler", "training_args") or path.stem.startswith("rng_state")


def _strip_outer_module(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Drop a wrapper's own attribute name (e.g. 'model.') when every key has it and the
    architecture's keys do not."""
    firsts = {k.split(".", 1)[0] for k in state}
    if len(firsts) == 1 and all("." in k for k in state):
        stripped = {k.split(".", 1)[1]: v for k, v in state.items()}
        if len(stripped.keys() & expected) > len(state.keys() & expected):
            return stripped
    return state


def convert_checkpoint(src: str | Path, out: str | Path, config_from: str | Path | None = None) -> dict:
    """Write a clean save_pretrained folder at `out` from the checkpoint at `src`.

    The architecture and the non-weight files (tokenizer, processor) come from `config_from`,
    else from `src` when it is a folder with config.json, else from the file's folder.
    Returns a summary; raises ValueError naming missing or unexpected keys.
    """
    from findbox.env import ensure_offline
    ensure_offline()  # transformers reads the offline variables at import
    from transformers import AutoConfig, AutoModel

    src, out = Path(src), Path(out)
    state = clean_state_dict(load_state_dict(src))
    config_dir = Path(config_from) if config_from else (src if src.is_dir() else src.parent)
    if not (config_dir / "config.json").is_file():
        raise ValueError(
            f"config: expected config.json in {str(config_dir)!r}; pass --config-from DIR "
            "(a save_pretrained folder of the same architecture)"
        )
    config = AutoConfig.from_pretrained(str(config_dir), local_files_only=True)
    model = AutoModel.from_config(config)
    expected = set(model.state_dict())
    state = _strip_outer_module(state, expected)
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint: keys do not match {type(model).__name__}: {len(missing)} missing "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}"
        )
    float_dtypes = {v.dtype for v in state.values() if v.is_floating_point()}
    if len(float_dtypes) == 1:
        model = model.to(float_dtypes.pop())  # keep the checkpoint's precision (bf16 stays bf16)
    model.load_state_dict(state, strict=True)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    copied = []
    for f in sorted(config_dir.iterdir()):
        if f.is_file() and f.name not in NOT_COPIED and f.suffix not in WEIGHT_SUFFIXES \
                and f.resolve() != (out / f.name).resolve():
            shutil.copy2(f, out / f.name)
            copied.append(f.name)
    return {"source": str(src), "out": str(out), "tensors": len(state), "architecture": type(model).__name__,
            "copied": copied}


# --- command line -------------------------------------------------------------------------------


@dataclass
class ConvertOptions:
    # None: IN itself when it is a folder with config.json, else the folder IN lies in
    config_from: str | None = option(None, metavar="DIR", help="folder with config.json and tokenizer/processor "
                                                               "files (default: IN itself, or the folder IN lies in)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="IN", help="checkpoint: .safetensors/.bin/.pt state dict, or a folder of them")
    parser.add_argument("out", metavar="OUT", help="folder to write (save_pretrained layout)")
    add_options(parser, ConvertOptions)


def main(args: argparse.Namespace) -> int:
    options = config_from_args(args, ConvertOptions)
    print(json.dumps(convert_checkpoint(args.src, args.out, options.config_from)))
    return 0
