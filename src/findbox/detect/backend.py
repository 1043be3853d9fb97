"""`--detector-backend auto`: torch or ONNX Runtime for a detector, chosen on this machine by measurement.

At the first load of a checkpoint on a machine, both backends detect the same few frames at the
served settings: the faster one serves, provided its boxes are torch's (same count per frame,
every corner within AGREE_PX); otherwise torch serves and the log says why. The decision is a
JSON record in the ONNX export's cache folder, keyed by the checkpoint's hash, the imgsz and the
machine (CPU model and flags, cores, torch threads, library versions), so later loads read it
instead of measuring again. A record is written under a temporary name and renamed, like the
exports: servers starting together never read half a record.

Why measure rather than fix a default: ONNX Runtime ran the demo detector 1.6-1.8x faster than
torch on a quiet 2-core CPU, but slower in one run on a busy one (docs/BENCHMARKS.md); which
wins depends on the CPU, the thread count and the model, and costs ~2 s to find out once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from findbox.boxes import Candidates
from findbox.config import DetectorBackend, DetectorConfig

# the tolerance of tests/test_detector_onnx.py: the same boxes, not merely similar ones
AGREE_PX = 0.5
# timed passes over the frames per backend, alternating: enough to see a 1.6x gap, ~2 s at imgsz 1280 on 2 cores
ROUNDS = 2
RECORD_VERSION = 1
log = logging.getLogger("findbox")


@dataclass(frozen=True)
class BackendChoice:
    """What `auto` chose for a detector, and why. Times are medians in ms per frame at `imgsz`."""

    backend: DetectorBackend
    reason: str  # e.g. "onnx faster, same boxes"; "onnx boxes differ from torch's on frame 1 (...)"
    imgsz: int | None = None
    torch_ms: float | None = None  # None: nothing measured (no onnx extra, not a CPU)
    onnx_ms: float | None = None
    max_diff_px: float | None = None  # largest corner difference of matched boxes; None when counts differed
    measured_at: str | None = None  # when the measurement ran, "YYYY-MM-DD HH:MM:SS" local time
    from_record: bool = False  # True: read from the record, not measured by this load
    record: str | None = None  # the record's path

    def describe(self) -> str:
        """One phrase for the log and the ready line: the backend, that auto chose it, the times and why."""
        text = f"{self.backend.value} (auto: {self.reason}"
        if self.torch_ms is not None and self.onnx_ms is not None:
            text += f"; torch {self.torch_ms:.0f} ms, onnx {self.onnx_ms:.0f} ms a frame at imgsz {self.imgsz}"
            text += f", measured {self.measured_at}" + (" (cached)" if self.from_record else "")
        return text + ")"

    def as_dict(self) -> dict:
        return {**asdict(self), "backend": self.backend.value}


def describe_backend(info: dict) -> str:
    """A detector's backend from its `info`, with auto's reason and times; an ensemble's per member
    ("torch + onnx (auto: ...)"); "" for a detector that does not say (a remote one)."""
    if "members" in info:
        return " + ".join(filter(None, (describe_backend(m) for m in info["members"])))
    if "backend_choice" in info:
        c = info["backend_choice"]
        return BackendChoice(**{**c, "backend": DetectorBackend(c["backend"])}).describe()
    return info.get("backend", "")


def match_boxes(a: Candidates, b: Candidates) -> float | None:
    """Largest corner difference in pixels between two sets of boxes matched one to one, or None
    when the counts differ. Each box of `a` takes the nearest unmatched box of `b` (by largest
    corner difference), so two boxes of near-equal confidence listed in swapped order still match."""
    if len(a) != len(b):
        return None
    unused = list(range(len(b)))
    worst = 0.0
    for box in a.xyxy:
        diffs = [float(np.abs(box - b.xyxy[j]).max()) for j in unused]
        k = int(np.argmin(diffs))
        worst = max(worst, diffs[k])
        unused.pop(k)
    return worst


def decide_backend(torch_s: Sequence[float], onnx_s: Sequence[float], torch_found: Sequence[Candidates],
                   onnx_found: Sequence[Candidates], tol_px: float = AGREE_PX) -> BackendChoice:
    """The backend to serve from measured seconds per frame and the boxes each found on the same frames.

    ONNX Runtime serves when its boxes agree with torch's on every frame (same count, matched corners
    within `tol_px`) and its median time is lower; otherwise torch, with the reason. A pure function:
    every case is testable with given numbers.
    """
    if not torch_s or not onnx_s or len(torch_found) != len(onnx_found) or not torch_found:
        raise ValueError(f"decide_backend: expected timings of both backends and boxes of the same frames, got "
                         f"{len(torch_s)} and {len(onnx_s)} timings, {len(torch_found)} and {len(onnx_found)} frames")
    torch_ms, onnx_ms = 1000 * float(np.median(torch_s)), 1000 * float(np.median(onnx_s))
    diffs = [match_boxes(t, o) for t, o in zip(torch_found, onnx_found)]
    times = dict(torch_ms=torch_ms, onnx_ms=onnx_ms)
    for k, (d, t, o) in enumerate(zip(diffs, torch_found, onnx_found)):
        if d is None:
            return BackendChoice(DetectorBackend.TORCH, f"onnx boxes differ from torch's on frame {k} "
                                 f"({len(o)} boxes against {len(t)}), torch kept", max_diff_px=None, **times)
        if d > tol_px:
            return BackendChoice(DetectorBackend.TORCH, f"onnx boxes differ from torch's on frame {k} "
                                 f"(by {d:.3g} px, above {tol_px:g}), torch kept", max_diff_px=max(diffs), **times)
    worst = max(diffs)
    if onnx_ms < torch_ms:
        return BackendChoice(DetectorBackend.ONNX, f"onnx {torch_ms / onnx_ms:.2f}x faster, same boxes "
                             f"(within {worst:.2g} px)", max_diff_px=worst, **times)
    return BackendChoice(DetectorBackend.TORCH, f"torch {onnx_ms / torch_ms:.2f}x faster", max_diff_px=worst, **times)


def machine() -> dict:
    """What makes timings of this machine comparable: CPU model and flags, cores, threads, library versions."""
    import torch

    from findbox.device import cpu_flags

    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model = next((line.partition(":")[2].strip() for line in cpuinfo.read_text(errors="replace").splitlines()
                      if line.startswith("model name")), "")
    versions = {}
    for name in ("onnxruntime", "ultralytics"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    flags = hashlib.blake2b(" ".join(sorted(cpu_flags())).encode(), digest_size=8).hexdigest()
    return {"cpu": model, "cpu_flags_digest": flags, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, **versions}


def record_path(pt_path: Path, imgsz: int, machine_info: dict) -> Path:
    """Where the decision for this checkpoint, imgsz and machine is kept: beside the ONNX exports."""
    from findbox.detect.ultralytics import pt_digest
    from findbox.env import cache_dir

    key = hashlib.blake2b(json.dumps(machine_info, sort_keys=True).encode(), digest_size=6).hexdigest()
    return cache_dir() / "onnx" / f"detector_{pt_digest(pt_path)}.imgsz{imgsz}.{key}.backend.json"


def read_record(path: Path) -> BackendChoice | None:
    """The choice a record holds, or None when there is none; a record this version cannot read is
    measured again (and overwritten), with a warning naming the file."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("version") != RECORD_VERSION:
            raise ValueError(f"expected version {RECORD_VERSION}, got {data.get('version')!r}")
        c = data["choice"]
        return BackendChoice(DetectorBackend(c["backend"]), c["reason"], c["imgsz"], c["torch_ms"], c["onnx_ms"],
                             c["max_diff_px"], c["measured_at"], from_record=True, record=str(path))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("detector backend record %s unreadable (%s): measuring again", path, exc)
        return None


def write_record(path: Path, choice: BackendChoice, pt_path: Path, machine_info: dict, frames: int,
                 torch_s: Sequence[float], onnx_s: Sequence[float]) -> None:
    from findbox.score.onnx import atomic_file

    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"version": RECORD_VERSION, "detector": str(pt_path), "machine": machine_info, "frames": frames,
              "torch_ms_per_call": [1000 * s for s in torch_s], "onnx_ms_per_call": [1000 * s for s in onnx_s],
              "choice": {k: v for k, v in choice.as_dict().items() if k not in ("from_record", "record")}}
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1))


def probe_frames() -> list[np.ndarray]:
    """The frames both backends detect: the bundled sample scene (1520x870, as served) and its mirror
    images, so there are objects to compare and the letterbox is the one real frames get."""
    from findbox.images import load_image_file
    from findbox.predict import SAMPLE_DIR

    image = load_image_file(SAMPLE_DIR / "images" / "image_4.jpg")
    return [image, np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(image[::-1])]


def measure(detectors: dict[str, object], frames: list[np.ndarray], rounds: int = ROUNDS
            ) -> tuple[dict[str, list[float]], dict[str, list[Candidates]]]:
    """Seconds per frame of each detector over `rounds` passes (alternating order, after one warm-up
    call each, which builds the predictor and the ONNX Runtime session), and the boxes of the last pass."""
    for det in detectors.values():
        det.detect(frames[:1])
    seconds: dict[str, list[float]] = {name: [] for name in detectors}
    found: dict[str, list[Candidates]] = {}
    names = list(detectors)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            found[name] = []
            for frame in frames:
                start = time.perf_counter()
                found[name] += detectors[name].detect([frame])
                seconds[name].append(time.perf_counter() - start)
    return seconds, found


def load_auto(path: Path, config: DetectorConfig, device, half: bool = False):
    """A `Detector` on the backend `auto` picks for this checkpoint, imgsz and machine, with its
    `backend_choice`: from the record when there is one, else measured now (and recorded)."""
    from findbox.detect.ultralytics import Detector
    from findbox.env import MissingExtra, require

    def torch_detector(choice: BackendChoice):
        detector = Detector.from_file(path, config, device, half, DetectorBackend.TORCH)
        detector.backend_choice = choice
        log.info("detector backend %s", choice.describe())
        return detector

    if device.type != "cpu":
        return torch_detector(BackendChoice(DetectorBackend.TORCH, f"onnx runs on the cpu only, device {device}"))
    try:
        require("onnxruntime", "onnx")
        require("onnx", "onnx")
    except MissingExtra:
        return torch_detector(BackendChoice(DetectorBackend.TORCH, "the onnx extra is not installed "
                                            "(pip install 'findbox[onnx]'), so torch is the only backend"))
    machine_info = machine()
    record = record_path(path, config.imgsz, machine_info)
    choice = read_record(record)
    if choice is not None:
        detector = Detector.from_file(path, config, device, half, choice.backend)
    else:
        torch_det = Detector.from_file(path, config, device, half, DetectorBackend.TORCH)
        try:
            onnx_det = Detector.from_file(path, config, device, half, DetectorBackend.ONNX)
        except ValueError as exc:  # the export failed: not recorded, a fixed ultralytics may export it
            log.warning("detector backend auto: %s", exc)
            return torch_detector(BackendChoice(DetectorBackend.TORCH, f"onnx export failed: {exc}"))
        frames = probe_frames()
        log.info("detector backend auto: timing torch and onnx on %d frames at imgsz %d (once per checkpoint "
                 "and machine)", len(frames), config.imgsz)
        seconds, found = measure({"torch": torch_det, "onnx": onnx_det}, frames)
        decided = decide_backend(seconds["torch"], seconds["onnx"], found["torch"], found["onnx"])
        choice = BackendChoice(**{**asdict(decided), "backend": decided.backend, "imgsz": config.imgsz,
                                  "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "record": str(record)})
        write_record(record, choice, path, machine_info, len(frames), seconds["torch"], seconds["onnx"])
        detector = onnx_det if choice.backend == DetectorBackend.ONNX else torch_det
    detector.backend_choice = choice
    log.info("detector backend %s", choice.describe())
    return detector
