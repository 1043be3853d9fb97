"""The scorer's towers on ONNX Runtime (CPU): exported once from a transformers scorer, then cached.

Both towers are exported with a dynamic batch axis: the image tower maps normalised
pixels (n, 3, H, W) float32 to (n, D) projected embeddings, the text tower maps the
tokenizer's (m, L) int64 ids (and attention mask) to (m, D). Preprocessing and
tokenising are the source scorer's, normalisation, caching and scoring those of every
`Scorer`, so the two backends differ only in the arithmetic of the towers (checked by
tests/test_onnx.py).

Exports are cached under `findbox.env.cache_dir() / "onnx"`, keyed by the model
folder's config and weight files (name, size, mtime) and the torch version: a
changed checkpoint exports again. Every file is written under a temporary name of its
own in that folder, then renamed (`atomic_file`), so servers sharing the cache never collide.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from findbox.cache import TEXT_CACHE_BYTES
from findbox.score import base
from findbox.score.preprocess import CropPreprocess
from findbox.score.transformers import TransformersScorer, _features, tokenize_prompted

OPSET = 17
EXPORT_VERSION = 2  # bump when the exported graphs change meaning (2: siglip text without attention mask)


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """A temporary path beside `target`, unique to this writer; renamed to `target` when the body returns.

    Servers sharing one cache may write the same file at once (they start together): each writes a
    file of its own and the renames are atomic, so a reader sees a whole file or none, and a writer
    never loses its file to another's rename. A body that raises leaves nothing behind.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


class _ImageTower(torch.nn.Module):
    def __init__(self, model, interpolate: bool = False):
        super().__init__()
        self.model = model
        self.interpolate = interpolate  # a small input (`Scorer.set_small_input`): position embeddings resized

    def forward(self, pixel_values):
        if self.interpolate:
            return _features(self.model.get_image_features(pixel_values=pixel_values, interpolate_pos_encoding=True))
        return _features(self.model.get_image_features(pixel_values=pixel_values))


class _TextTower(torch.nn.Module):
    def __init__(self, model, with_mask: bool):
        super().__init__()
        self.model = model
        self.with_mask = with_mask

    def forward(self, input_ids, attention_mask=None):
        if self.with_mask:
            return _features(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))
        return _features(self.model.get_text_features(input_ids=input_ids))


def _model_key(model) -> str:
    """Digest of what the export depends on: the source folder's files (by stat), the config, torch."""
    h = hashlib.sha256()
    h.update(f"v{EXPORT_VERSION} opset{OPSET} torch{torch.__version__}".encode())
    h.update(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    folder = Path(getattr(model, "name_or_path", "") or "")
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            if f.suffix in (".safetensors", ".bin", ".json") and f.is_file():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:  # an in-memory model: key on the weights themselves
        for name, p in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:24]


def export_towers(scorer: TransformersScorer, out_dir: Path) -> dict[str, Path]:
    """Export the image and text towers of a transformers `Scorer` to ONNX (fp32, dynamic batch)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = scorer.model.float().cpu().eval()
    h, w = scorer.preprocess.size_hw
    tokens = scorer.tokenize(["a caption", "another caption"], padding="max_length")  # the graph's fixed length
    with_mask = "attention_mask" in tokens
    paths = {"image": out_dir / "image.onnx", "text": out_dir / "text.onnx"}
    text_inputs = ["input_ids", "attention_mask"] if with_mask else ["input_ids"]
    from findbox.env import require
    require("onnx", "onnx")  # torch.onnx.export writes through it
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        with atomic_file(paths["image"]) as tmp:
            torch.onnx.export(
                _ImageTower(model), (torch.zeros(2, 3, h, w),), str(tmp),
                input_names=["pixel_values"], output_names=["embeds"],
                dynamic_axes={"pixel_values": {0: "n"}, "embeds": {0: "n"}}, opset_version=OPSET, dynamo=False,
            )
        with atomic_file(paths["text"]) as tmp:
            torch.onnx.export(
                _TextTower(model, with_mask), tuple(tokens[k].cpu() for k in text_inputs), str(tmp),
                input_names=text_inputs, output_names=["embeds"],
                dynamic_axes={**{k: {0: "m"} for k in text_inputs}, "embeds": {0: "m"}}, opset_version=OPSET,
                dynamo=False,
            )
    return paths


def small_tower_path(out_dir: Path, side: int) -> Path:
    return out_dir / f"image_{side}.onnx"


def export_small_image_tower(scorer: TransformersScorer, out_dir: Path, side: int) -> Path:
    """The image tower at a side x side input (position embeddings interpolated once, at export)."""
    from findbox.env import require

    require("onnx", "onnx")
    model = scorer.model.float().cpu().eval()
    path = small_tower_path(out_dir, side)
    with warnings.catch_warnings(), torch.no_grad(), atomic_file(path) as tmp:
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _ImageTower(model, interpolate=True), (torch.zeros(2, 3, side, side),), str(tmp),
            input_names=["pixel_values"], output_names=["embeds"],
            dynamic_axes={"pixel_values": {0: "n"}, "embeds": {0: "n"}}, opset_version=OPSET, dynamo=False,
        )
    return path


class OnnxScorer(base.Scorer):
    """A transformers model's towers on ONNX Runtime, on the CPU: fp32, or int8 linear layers (`int8`).

    Holds no PyTorch model: the source scorer's tokenizer, preprocessing, prompt, text
    length, logit scale and bias are copied by `from_scorer`, its weights are dropped.
    """

    def __init__(
        self,
        paths: dict[str, Path],
        tokenizer,
        preprocess: CropPreprocess,
        prompt: str,
        max_text_length: int,
        family: str,
        embed_dim: int,
        logit_scale_bias: tuple[float, float],
        max_batch: int = 32,
        text_cache_size: int = 4096,
        threads: int | None = None,
        int8: bool = False,
        text_cache_bytes: int = TEXT_CACHE_BYTES,
        static: bool = False,
    ):
        from findbox.env import require
        require("onnxruntime", "onnx")
        import onnxruntime as ort

        super().__init__(preprocess, prompt, torch.device("cpu"), torch.float32, max_batch, text_cache_size,
                         text_cache_bytes)
        self.tokenizer = tokenizer
        self.max_text_length = max_text_length
        self.paths = paths
        self._family = family
        self._embed_dim = embed_dim
        self._scale_bias = logit_scale_bias
        self.int8 = int8
        self.static = int8 and static  # int8 towers with fixed activation scales (`findbox.score.int8_static`)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between runs: torch (detector, preprocessing) shares the same few cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        self._image = ort.InferenceSession(str(paths["image"]), options, providers=providers)
        # image towers at smaller inputs, by side (`--small-crop-input`), from paths "image_<side>"
        self._small_images = {int(k.removeprefix("image_")): ort.InferenceSession(str(p), options, providers=providers)
                              for k, p in paths.items() if k.startswith("image_")}
        self._text = ort.InferenceSession(str(paths["text"]), options, providers=providers)
        # the exported text graph says whether it takes an attention mask (the source's text_attention_mask)
        self._text_inputs = [i.name for i in self._text.get_inputs()]
        if int8 and not static:  # one activation scale per run: each crop and caption runs alone
            from findbox.score.int8 import one_forward_per_row

            one_forward_per_row(self)

    @classmethod
    def from_scorer(cls, scorer: TransformersScorer, cache: str | Path | None = None,
                    int8: bool = False, static: dict | None = None) -> "OnnxScorer":
        """Export (or reuse a cached export of) `scorer`'s towers and run them on ONNX Runtime.

        int8: run the towers with int8 linear layers: dynamically quantised (`findbox.score.int8`), or with
        `static`, a calibration record's "int8_static" ranges, statically (`findbox.score.int8_static`),
        every crop and caption of a call then in one forward.
        """
        paths = exported_towers(scorer, cache)
        if int8 and static is not None:
            from findbox.score.int8_static import static_tower_paths

            paths = static_tower_paths(paths, static)
        elif int8:
            from findbox.score.int8 import quantize_onnx_towers

            paths = quantize_onnx_towers(paths)
        onnx = cls(paths, scorer.tokenizer, scorer.preprocess, scorer.prompt, scorer.max_text_length,
                   scorer.model.config.model_type, scorer.embed_dim, scorer.logit_scale_bias(), scorer.max_batch,
                   scorer.text_cache_size, int8=int8, text_cache_bytes=scorer.text_cache_bytes,
                   static=static is not None)
        onnx.set_small_input(scorer.small_input)
        return onnx

    @property
    def info(self) -> dict:
        backend = "onnxruntime"
        if self.static:
            from findbox.score.int8_static import STATIC_BACKEND

            backend = STATIC_BACKEND
        info = {"kind": "transformers", "family": self._family, "prompt": self.prompt, "backend": backend}
        return {**info, "precision": "int8"} if self.int8 else info

    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    def logit_scale_bias(self) -> tuple[float, float]:
        return self._scale_bias

    def input_sizes(self) -> tuple[int, ...]:
        """The sides of the small image towers exported beside the full one (`from_scorer`)."""
        return tuple(sorted(self._small_images))

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(pixels.detach().float().cpu().numpy())
        h, w = x.shape[-2:]
        session = self._small_images[h] if (h, w) != tuple(self.preprocess.size_hw) else self._image
        return torch.from_numpy(session.run(None, {"pixel_values": x})[0])

    def text_features(self, captions: list[str]) -> torch.Tensor:
        tokens = tokenize_prompted(self.tokenizer, self.prompt, captions, self.max_text_length)
        feeds = {k: tokens[k].numpy().astype(np.int64) for k in self._text_inputs}
        return torch.from_numpy(self._text.run(None, feeds)[0])


def exported_towers(scorer: TransformersScorer, cache: str | Path | None = None) -> dict[str, Path]:
    """The fp32 ONNX towers of `scorer` ({"image", "text"}, and "image_<side>" with a small crop input),
    exported once into the export cache (`cache`, default findbox's cache folder) and reused after."""
    if type(scorer) is not TransformersScorer:
        raise ValueError(f"scorer backend onnx: expected a transformers scorer, got {type(scorer).__name__}")
    family = scorer.model.config.model_type
    if family == "siglip2":
        raise ValueError("scorer backend onnx: SigLIP 2 NaFlex towers are not exported; use --scorer-backend torch")
    if scorer.device.type != "cpu":
        raise ValueError(f"scorer backend onnx: runs on the CPU (onnxruntime CPU build), got device {scorer.device}")
    if scorer.dtype != torch.float32 or scorer.autocast_dtype is not None:
        raise ValueError(f"scorer backend onnx: runs fp32, got weights {scorer.dtype} with autocast "
                         f"{scorer.autocast_dtype}; use --precision fp32")
    from findbox.env import cache_dir

    root = Path(cache) if cache is not None else cache_dir() / "onnx"
    out_dir = root / _model_key(scorer.model)
    paths = {"image": out_dir / "image.onnx", "text": out_dir / "text.onnx"}
    if not all(p.is_file() for p in paths.values()):
        paths = export_towers(scorer, out_dir)
    if scorer.small_input is not None:  # `--small-crop-input`: a second image tower at that size
        side = scorer.small_input
        path = small_tower_path(out_dir, side)
        paths[f"image_{side}"] = path if path.is_file() else export_small_image_tower(scorer, out_dir, side)
    return paths
