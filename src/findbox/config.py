"""Typed configuration. Field comments say why the default is what it is.

`PipelineConfig` chooses and configures the models (what `load_pipeline` builds, what
`findbox eval` runs); `ServerConfig` holds the HTTP settings of `findbox serve`;
`ServeConfig` is both. A serve TOML file is flat: model and server keys side by side,
detector keys at top level or under [detection] (`ServeConfig.from_dict`).

Each field's command-line flag is built from it (`findbox.cli.add_options`): `option(...)`
gives the help text and, where needed, a flag name or parser that differ from the field's.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar


def option(default: Any = dataclasses.MISSING, *, help: str = "", flag: str | None = None, metavar: str | None = None,
           choices: tuple[str, ...] | None = None, parse: Callable[[str], Any] | None = None,
           show: Callable[[Any], str] | None = None, cli: bool = True, default_factory: Any = dataclasses.MISSING):
    """A dataclass field plus its command-line form, read by `findbox.cli.add_options`.

    help: what the option does; "(default: X)" is appended from the field's default.
    flag: the flag when it is not --kebab-name (an existing flag name kept).
    choices: allowed strings when they are fewer than the Enum's members.
    parse: str -> value for a flag whose text is not the field's type (e.g. "0.9,0.99").
    show: value -> str for the default in the help text.
    cli: False keeps the field out of the command line (TOML files still set it).
    """
    meta = {"help": help, "flag": flag, "metavar": metavar, "choices": choices, "parse": parse, "show": show,
            "cli": cli}
    return field(default=default, default_factory=default_factory, metadata=meta)


class Fallback(str, enum.Enum):
    """What to answer when the detector proposes no box for an image."""

    IMAGE = "image"  # the whole image: a valid box inside the image, never an error
    ZEROS = "zeros"  # [0, 0, 0, 0], what later versions of the original returned


class Precision(str, enum.Enum):
    """Arithmetic of the models. AUTO is chosen per machine by `findbox.device.choose_precision`."""

    AUTO = "auto"  # fp16 on CUDA; CPU: int8 or bf16 where the scorer's calibration record unlocks them, else fp32
    FP32 = "fp32"  # exact: the reference answers
    FP16 = "fp16"
    BF16 = "bf16"
    BF16_MIXED = "bf16-mixed"  # fp32 weights, scorer matmuls in bf16 (torch.autocast); CPUs with avx512_bf16/AMX
    INT8 = "int8"  # CPU: scorer linear layers dynamically quantised to int8 (findbox.score.int8); the rest fp32


class ScorerBackend(str, enum.Enum):
    """What runs the scorer's towers (transformers scorers only)."""

    TORCH = "torch"
    ONNX = "onnx"  # ONNX Runtime on towers exported once and cached (findbox.score.onnx)


class DetectorBackend(str, enum.Enum):
    """What runs the detector (one ultralytics checkpoint or each member of an ensemble)."""

    TORCH = "torch"
    ONNX = "onnx"  # ultralytics' ONNX export (dynamic shapes), run by ONNX Runtime on the CPU; exported once, cached
    AUTO = "auto"  # the faster of the two with the same boxes, timed at first load and recorded (findbox.detect.backend)


class DetectorPrecision(str, enum.Enum):
    """Arithmetic of the detector. AUTO: on the CPU from the calibration record; on CUDA the run's precision
    (half with fp16). BF16 is taken as given on either."""

    AUTO = "auto"  # bf16 where the scorer's calibration record shows it keeping this detector's answers, else fp32
    FP32 = "fp32"  # exact: the reference answers
    BF16 = "bf16"  # torch.autocast(bf16) around the torch detector's forward: CPUs with avx512_bf16/AMX, GPUs


class Engine(str, enum.Enum):
    """Where `findbox serve` runs the models (the HTTP protocol is the same on both)."""

    INPROCESS = "inprocess"  # one process, one model worker thread: the default, nothing to set up
    RAY = "ray"  # Ray Serve: detector and scorer as deployments with replicas of their own (the [ray] extra)


class ScoreFusion(str, enum.Enum):
    """How a candidate's rank combines the scorer logit with the detector confidence."""

    SCORER = "scorer"  # the scorer logit alone, as the original ranked
    PRODUCT = "product"  # logit + fusion_weight * log(det_conf): a product of the two, in log space


def _grid_text(grid: tuple[int, int]) -> str:
    return f"{grid[0]}x{grid[1]}" + (" = off" if tuple(grid) == (1, 1) else "")


@dataclass
class DetectorConfig:
    # the original's best: small objects gain from resolution
    imgsz: int = option(1600, help="detector input size in pixels")
    # low on purpose: the scorer rejects false positives
    conf: float = option(0.1, help="detector confidence threshold")
    # aggressive NMS: objects in these scenes rarely overlap
    iou: float = option(0.1, help="detector NMS IoU")
    max_det: int = option(10, help="boxes per image")  # scenes hold 3-8 objects
    # ultralytics TTA; the original used it, it costs ~3x detector time
    augment: bool = option(False, help="detector test-time augmentation")
    # SAHI-style tiles (cols, rows) plus the full image; "2x2" accepted; 1x1 = off
    slices: tuple[int, int] = option((1, 1), metavar="COLSxROWS", show=_grid_text,
                                     help="SAHI-style sliced detection: tiles plus the full image, e.g. 2x2")
    # tiles overlap so an object cut by one tile is whole in its neighbour
    slice_overlap: float = option(0.2, help="overlap of neighbouring tiles, a fraction of a tile")

    def __post_init__(self) -> None:
        from findbox.detect.sliced import parse_grid

        self.slices = parse_grid(self.slices)
        _check_range("slice_overlap", self.slice_overlap, 0.0, 0.9)
        _check_range("imgsz", self.imgsz, 32, 8192)
        _check_range("conf", self.conf, 0.0, 1.0)
        _check_range("iou", self.iou, 0.0, 1.0)
        _check_range("max_det", self.max_det, 1, 10000)


@dataclass
class PipelineConfig:
    """What answers: the models, their settings, the ranking and the caches. `load_pipeline` takes it."""

    # several .pt are fused by WBF; None = the bundled demo
    detector: str | list[str] | None = option(
        None, metavar="PT", help="ultralytics detection checkpoint; repeat to fuse several by WBF "
                                 "(default: the bundled demo)")
    # a scorer spec (findbox.score.spec); None = the bundled demo
    scorer: str | None = option(
        None, metavar="SPEC", help="transformers save_pretrained folder, open_clip:ARCH:WEIGHTS[:TOKENIZER_DIR] or a "
                                   "scorer .toml (docs/ZOO.md; default: the bundled demo)")
    # None = the bundle's, if it has one and the scorer is the bundle's
    upscaler: str | None = option(None, metavar="PTH",
                                  help="Real-ESRGAN .pth (params or params_ema), loaded by spandrel")
    no_upscaler: bool = option(False, help="score crops as cut")
    device: str = option("auto", help="auto, cpu, cuda or cuda:N")
    precision: Precision = option(Precision.AUTO, help="model precision; auto: fp16 on CUDA; on the CPU int8 "
                                  "(VNNI) or bf16 (avx512_bf16/AMX) where the scorer's record from `findbox "
                                  "calibrate` shows them keeping fp32's answers, else fp32 (fp32: exact answers)")
    detection: DetectorConfig = field(default_factory=DetectorConfig)
    fallback: Fallback = option(Fallback.IMAGE, help="box when nothing is detected: the whole image or zeros")
    # None = the scorer family's default ("This is a photo of {}.")
    prompt: str | None = option(None, help="prompt template with exactly one {} for the caption, {{ and }} for "
                                           "literal braces (default: the scorer family's)")
    # the original ranked by the scorer alone
    score_fusion: ScoreFusion = option(ScoreFusion.SCORER,
                                       help="rank boxes by the scorer logit alone or by logit + w * log(det_conf)")
    fusion_weight: float = option(1.0, help="w of --score-fusion product")
    # bounds memory whatever the request size
    crop_batch: int = option(32, help="crops per scorer forward")
    text_cache_size: int = option(4096, help="distinct captions kept embedded across requests")
    # a count alone lets long captions grow the cache without limit; 4096 x 1152 x 4 B embeddings = 19 MB
    text_cache_mb: int = option(32, metavar="MB", help="memory bound of the caption cache (embeddings and "
                                "caption text), whichever bound is hit first")
    # ~30 KB each
    image_cache: int = option(256, metavar="N", help="images kept detected and embedded across requests; 0 = off")
    image_cache_mb: int = option(64, metavar="MB", help="memory bound of the image cache, whichever bound is hit first")
    # onnx: same boxes, 1.0-1.1x on 2 CPU cores (BENCHMARKS.md)
    scorer_backend: ScorerBackend = option(
        ScorerBackend.TORCH, help="run the scorer towers on torch or ONNX Runtime (CPU, fp32; exported once, cached)")
    # auto: onnx was 1.6x torch on a quiet 2-core CPU and slower once on a busy one (BENCHMARKS.md), so each
    # machine measures once
    detector_backend: DetectorBackend = option(
        DetectorBackend.AUTO, help="run the detector on torch or ONNX Runtime (CPU only; exported once, cached); "
                                   "auto: the faster of the two with the same boxes, timed once per checkpoint, "
                                   "imgsz and machine and recorded; torch without the onnx extra or off the CPU")
    # bf16 ran the demo detector 2.4x faster with boxes within 0.3 px on 4 frames, but boxes can move: measured
    # per detector and scorer by `findbox calibrate` before auto takes it (BENCHMARKS.md)
    detector_precision: DetectorPrecision = option(
        DetectorPrecision.AUTO, help="the detector's arithmetic: fp32 (exact) or bf16 (torch.autocast on the torch "
                                     "backend: CPUs with avx512_bf16/AMX, GPUs); auto: on the CPU bf16 where the "
                                     "scorer's record from `findbox calibrate` shows bf16 keeping this detector's "
                                     "answers, else fp32; on a GPU half with --precision fp16")
    # off: the demo scorer (trained at one size) loses accuracy at smaller inputs (BENCHMARKS.md, small crops)
    small_crop_input: int = option(0, metavar="PX", help="score crops whose longer side is at most PX pixels at a "
                                   "PX x PX input: fewer tokens, position embeddings interpolated (transformers "
                                   "scorers; a multiple of the patch size; 0 = off)")
    # no gain measured on CPU, GPU not yet measured
    compile: bool = option(False, help="torch.compile the scorer's image tower")

    def __post_init__(self) -> None:
        self.precision = _enum("precision", Precision, self.precision)
        self.fallback = _enum("fallback", Fallback, self.fallback)
        self.score_fusion = _enum("score_fusion", ScoreFusion, self.score_fusion)
        if self.prompt is not None:  # a template without {} would ignore every caption: refuse it at startup
            from findbox.score.preprocess import check_prompt  # imports torch: only when a prompt is given

            check_prompt(self.prompt)
        _check_range("fusion_weight", self.fusion_weight, 0.0, 1000.0)
        self.detector = _detector_paths(self.detector)
        if isinstance(self.detection, dict):
            self.detection = from_dict(DetectorConfig, self.detection, "detection")
        _check_range("crop_batch", self.crop_batch, 1, 4096)
        _check_range("small_crop_input", self.small_crop_input, 0, 8192)
        self.scorer_backend = _enum("scorer_backend", ScorerBackend, self.scorer_backend)
        self.detector_backend = _enum("detector_backend", DetectorBackend, self.detector_backend)
        self.detector_precision = _enum("detector_precision", DetectorPrecision, self.detector_precision)
        if self.detector_precision == DetectorPrecision.BF16 and self.detector_backend == DetectorBackend.ONNX:
            raise ValueError("detector_precision: bf16 runs on the torch backend (torch.autocast), got "
                             "detector_backend onnx; pass --detector-backend torch or auto")
        _check_range("image_cache", self.image_cache, 0, 10_000_000)
        _check_range("image_cache_mb", self.image_cache_mb, 0, 1_000_000)
        _check_range("text_cache_mb", self.text_cache_mb, 0, 1_000_000)


@dataclass
class ServerConfig:
    """How `findbox serve` speaks HTTP: address, request caps, readiness, time limits."""

    host: str = option("0.0.0.0", help="bind address")
    port: int = option(5004, help="port")  # the original service's port; clients expect it
    # 64 instances of ~1 MB JPEG fit comfortably
    max_body_bytes: int = option(64 * 1024 * 1024, help="largest request body; larger gets 413")
    max_instances: int = option(256, help="most instances per request; more gets 413")  # clients send 1, 4 or 64
    # ~30x a 1520x870 frame; stops decompression bombs
    max_image_pixels: int = option(40_000_000, help="largest image (w*h); larger gets 413")
    # decoded pixels of a request's distinct images together, read from their headers: 64 distinct
    # 1520x870 frames (85 MP) with 50% headroom, or 3 images at max_image_pixels. Images are decoded
    # chunk by chunk, so this bounds the work (decode, crops) more than the memory: the largest
    # request it admits fits request_timeout_s on a CPU (docs/OPERATIONS.md, "Memory per request")
    max_request_pixels: int = option(128_000_000, help="most decoded pixels (w*h summed over a request's "
                                     "distinct images); more gets 413")
    # the sum over concurrent requests, which the caps above do not bound. The server's RSS grew by about
    # the budget under a flood of 30 MB images (docs/OPERATIONS.md, "Bytes in flight"): a 32nd of physical
    # memory still admits ~3 such bodies at once (one model worker serves one at a time) and ~1000 of 250 KB
    max_inflight_bytes: int = option(0, metavar="BYTES", help="most request bytes in flight together, each "
                                     "body counted 4 times (its copies while served); more gets 503 with "
                                     "Retry-After before the body is read; 0 = a 32nd of physical memory")
    # above the 40 pool threads that wait on the models, so only a raised pool meets it
    max_queued_requests: int = option(64, help="most requests waiting for the model worker; more gets 503")
    # none: open, as the original service (clients on a private network); a file keeps keys out of argv and logs
    api_key_file: str | None = option(None, metavar="FILE", help="ask /identify and /v1/ground for "
                                      "'Authorization: Bearer KEY', a key of FILE (one per line); /health stays open")
    warmup: bool = option(True, help="report ready without a warm-up request")  # one request before /health says ready
    # far above a 64-instance GPU batch
    request_timeout_s: float = option(120.0, help="answer 504 to a request not answered in this many seconds")
    batch_window_ms: float = option(0.0, help="gather concurrent requests into one model call for this long; 0 = off")
    engine: Engine = option(Engine.INPROCESS, help="where the models run: inprocess, or ray (Ray Serve: "
                            "per-stage replicas, one machine or a cluster; see the ray options)")

    def __post_init__(self) -> None:
        _check_range("port", self.port, 0, 65535)
        _check_range("max_instances", self.max_instances, 1, 1_000_000)
        _check_range("max_request_pixels", self.max_request_pixels, 1, 10**12)
        _check_range("request_timeout_s", self.request_timeout_s, 0.001, 86400)
        _check_range("batch_window_ms", self.batch_window_ms, 0, 10_000)
        self.engine = _enum("engine", Engine, self.engine)
        _check_range("max_inflight_bytes", self.max_inflight_bytes, 0, 2**62)
        _check_range("max_queued_requests", self.max_queued_requests, 1, 1_000_000)


@dataclass
class RayConfig:
    """How `findbox serve --engine ray` lays the stages out on a Ray cluster (Ray Serve deployments).

    Resources are Ray's logical units: fractions are allowed, and a replica gets its torch threads
    from its CPU share unless a thread count is given (torch would otherwise take every core of the node).
    """

    # empty: a local cluster, started and stopped with the server; "auto" or ray://HOST:10001 joins one
    address: str = option("", help="Ray cluster to join (auto, HOST:6379 or ray://HOST:10001), left running "
                          "on exit; empty = start a local one and stop it on exit")
    num_cpus: float = option(0.0, flag="--ray-num-cpus", help="logical CPUs of a local cluster started here; "
                             "0 = this machine's cores")
    # Prometheus scrapes each node's metrics agent: findbox's series come out as ray_findbox_* there
    metrics_export_port: int = option(0, flag="--ray-metrics-port", help="port of a local cluster's Prometheus "
                                      "metrics (ray_findbox_* and ray_serve_* series); 0 = Ray's choice")
    ingress_replicas: int = option(1, help="HTTP ingress replicas")
    ingress_num_cpus: float = option(0.25, help="CPUs each ingress replica reserves")  # parsing and answers: light
    detector_replicas: int = option(1, help="detector replicas (the least with autoscaling)")
    # 0: a fixed replica count; above detector_replicas: Serve's autoscaler between the two
    detector_max_replicas: int = option(0, help="autoscale the detector up to this many replicas; 0 = fixed")
    detector_num_cpus: float = option(1.0, help="CPUs each detector replica reserves")
    detector_num_gpus: float = option(0.0, help="GPUs each detector replica reserves (fractions share one)")
    detector_threads: int = option(0, help="torch threads per detector replica; 0 = its CPUs rounded up")
    # frames of several requests in one detector call; the wait is short next to a detector call
    detector_batch_size: int = option(8, help="most calls the detector gathers into one batch")
    detector_batch_wait_ms: float = option(5.0, help="how long the detector waits to fill a batch")
    scorer_replicas: int = option(1, help="scorer replicas (the least with autoscaling)")
    scorer_max_replicas: int = option(0, help="autoscale the scorer up to this many replicas; 0 = fixed")
    scorer_num_cpus: float = option(1.0, help="CPUs each scorer replica reserves")
    scorer_num_gpus: float = option(0.0, help="GPUs each scorer replica reserves (fractions share one)")
    scorer_threads: int = option(0, help="torch threads per scorer replica; 0 = its CPUs rounded up")
    # 1 spreads the replicas over the nodes (one per GPU node, or the nodes of a CPU cluster)
    scorer_max_replicas_per_node: int = option(0, help="most scorer replicas on one node; 0 = no limit")
    # requests a scorer replica holds at once: its model worker runs one and gathers the rest
    scorer_max_ongoing: int = option(8, help="requests a scorer replica takes at once")

    def __post_init__(self) -> None:
        for name in ("ingress_replicas", "detector_replicas", "scorer_replicas", "detector_batch_size",
                     "scorer_max_ongoing"):
            _check_range(name, getattr(self, name), 1, 10_000)
        for name in ("detector_max_replicas", "scorer_max_replicas", "detector_threads", "scorer_threads",
                     "scorer_max_replicas_per_node"):
            _check_range(name, getattr(self, name), 0, 10_000)
        _check_range("metrics_export_port", self.metrics_export_port, 0, 65535)
        for name in ("num_cpus", "ingress_num_cpus", "detector_num_cpus", "detector_num_gpus", "scorer_num_cpus",
                     "scorer_num_gpus", "detector_batch_wait_ms"):
            _check_range(name, getattr(self, name), 0, 100_000)


@dataclass
class ServeConfig:
    """Everything `findbox serve` needs: the pipeline it loads and how it serves it."""

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    ray: RayConfig = field(default_factory=RayConfig)  # read with --engine ray only

    def __post_init__(self) -> None:
        if isinstance(self.pipeline, dict):
            self.pipeline = from_dict(PipelineConfig, self.pipeline, "pipeline")
        if isinstance(self.server, dict):
            self.server = from_dict(ServerConfig, self.server, "server")
        if isinstance(self.ray, dict):
            self.ray = from_dict(RayConfig, self.ray, "ray")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> ServeConfig:
        """From one flat dict, as a serve TOML file holds it: model and server keys side by side,
        detector keys at top level or under "detection". Unknown keys raise with a suggestion."""
        nested = nest_keys(cls, data, where)
        return cls(pipeline=from_dict(PipelineConfig, nested.get("pipeline", {}), where),
                   server=from_dict(ServerConfig, nested.get("server", {}), where),
                   ray=from_dict(RayConfig, nested.get("ray", {}), where))


T = TypeVar("T")


def _detector_paths(value: Any) -> str | list[str] | None:
    """One path stays a str (a list of one becomes its str); several stay a list of str."""
    if value is None or isinstance(value, (str, Path)):
        return None if value is None else str(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, Path)) for v in value):
        return str(value[0]) if len(value) == 1 else [str(v) for v in value]
    raise TypeError(f"detector: expected a path or a non-empty list of paths, got {value!r}")


def _enum(name: str, cls: type[enum.Enum], value: Any) -> Any:
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)  # type: ignore[attr-defined]
        raise ValueError(f"{name}: expected one of {allowed}, got {value!r}") from None


def _check_range(name: str, value: Any, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: expected a value in [{lo}, {hi}], got {value}")


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation (the modules use `from __future__ import annotations`)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def nested_config(cls: type, name: str) -> type | None:
    """The dataclass type of field `name` of `cls` when it is one (e.g. PipelineConfig.detection), else None."""
    kind = field_types(cls)[name]
    return kind if dataclasses.is_dataclass(kind) else None


def nest_keys(cls: type, data: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """A flat dict -> the nested dict `cls` takes: a key naming a field of a nested config
    (e.g. "imgsz" of PipelineConfig.detection) moves under that field; a table under a nested
    field's own name stays there. Unknown keys raise with a suggestion."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = _key_path(cls, key)
        if path is None:
            raise _unknown_key(where, key, _all_keys(cls))
        target = out
        for step in path[:-1]:
            target = target.setdefault(step, {})
        sub = nested_config(_owner(cls, path), path[-1])
        if sub is not None and isinstance(value, dict):
            target[path[-1]] = {**target.get(path[-1], {}), **nest_keys(sub, value, f"{where}.{path[-1]}")}
        else:
            target[path[-1]] = value
    return out


def _owner(cls: type, path: tuple[str, ...]) -> type:
    """The dataclass that holds the last name of `path`."""
    for step in path[:-1]:
        cls = nested_config(cls, step)  # type: ignore[assignment]
    return cls


def _key_path(cls: type, key: str) -> tuple[str, ...] | None:
    """("detection", "imgsz") for key "imgsz" of PipelineConfig; None when no field has that name."""
    names = [f.name for f in dataclasses.fields(cls)]
    if key in names:
        return (key,)
    for name in names:
        sub = nested_config(cls, name)
        if sub is not None and (path := _key_path(sub, key)) is not None:
            return (name, *path)
    return None


def _all_keys(cls: type) -> set[str]:
    keys = set()
    for f in dataclasses.fields(cls):
        keys.add(f.name)
        if (sub := nested_config(cls, f.name)) is not None:
            keys |= _all_keys(sub)
    return keys


def _unknown_key(where: str, key: str, known: set[str]) -> ValueError:
    """The error for a config key no field has, with the closest known key as a suggestion."""
    names = sorted(known)
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"{where}: unknown key {key!r}{hint}; known keys: {', '.join(names)}")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build a config dataclass from a dict (a dict for a nested config too); unknown keys
    raise with a suggestion."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in names:
            raise _unknown_key(where, key, names)
    values = dict(data)
    for key, value in data.items():
        sub = nested_config(cls, key)
        if sub is not None and isinstance(value, dict):
            values[key] = from_dict(sub, value, f"{where}.{key}")
    return cls(**values)


def load_toml(path: str | Path) -> dict[str, Any]:
    """The tables and keys of a TOML config file, as read; ValueError names the file on bad TOML."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config: expected a TOML file, got {str(path)!r} ({exc})") from None
