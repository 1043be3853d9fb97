"""The calibration record: which faster precisions keep a scorer's answers, measured on its user's data.

`findbox calibrate` runs the pipeline over a vlm.jsonl in fp32 and in every faster precision the
machine has, and writes `findbox_calibration.json` beside the scorer's weights. `--precision auto`
reads it (`read_calibration`) and unlocks a faster precision only where the record shows it keeps
the answers (`Calibration.keeps_answers`). A record is keyed to the weights it measured (sha256 of
each weights file): a record made on other weights is ignored, with a log line, so that copying a
folder or fine-tuning in place never carries an old measurement over.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

CALIBRATION_FILE = "findbox_calibration.json"
# the weights files of a save_pretrained folder; the record is keyed to their bytes
WEIGHTS_PATTERNS = ("*.safetensors", "*.bin")
# the rule a faster precision must meet on the record's data (the project's precision goal)
MIN_SAME_BOX = 0.99  # share of instances whose box is fp32's box
MAX_ACCURACY_CHANGE = 0.005  # |accuracy - fp32 accuracy|, i.e. within 0.5 points
# the backend of a detector row: the scorer in fp32 as the reference, the detector in bf16 on torch (the row's
# `detector` names the checkpoint measured, by sha256 of its bytes)
DETECTOR_BF16 = "detector-torch"

log = logging.getLogger("findbox")


@dataclass(frozen=True)
class Measured:
    """One precision path measured against fp32 on the record's data.

    precision: "bf16" or "int8" (or "fp32", the reference); backend: what ran the scorer's towers
    ("torch", "onnxruntime", or "onnxruntime-static": int8 with the record's static scales); same_box: share of instances answered with fp32's box, in [0, 1];
    accuracy: share of hits (IoU > 0.5) in [0, 1]; instances_per_s: the pipeline's throughput.
    A detector row (backend DETECTOR_BF16) measures the detector's precision instead, the scorer in fp32;
    detector: the sha256 of the checkpoint it measured (None on scorer rows).
    """

    precision: str
    backend: str
    same_box: float
    accuracy: float
    instances_per_s: float | None = None
    detector: str | None = None


@dataclass(frozen=True)
class Calibration:
    """A scorer's record: what was measured, on which weights and data, on which machine."""

    weights: dict[str, str]  # weights file name -> sha256 hex
    results: tuple[Measured, ...]
    machine_flags: frozenset[str] = frozenset()  # the measuring CPU's precision-relevant flags
    instances: int = 0
    extra: dict = field(default_factory=dict, compare=False)  # the rest of the file (data, settings, version)

    def reference(self) -> Measured | None:
        return next((m for m in self.results if m.precision == "fp32"), None)

    def find(self, precision: str, backend: str) -> Measured | None:
        return next((m for m in self.results if m.precision == precision and m.backend == backend), None)

    def keeps_answers(self, precision: str, backend: str) -> bool:
        """Whether `precision` on `backend` met the rule on the record's data: >= MIN_SAME_BOX of the boxes
        fp32 chose, accuracy within MAX_ACCURACY_CHANGE of fp32's. Unmeasured: False."""
        measured, reference = self.find(precision, backend), self.reference()
        if measured is None or reference is None:
            return False
        change = abs(measured.accuracy - reference.accuracy)
        return measured.same_box >= MIN_SAME_BOX and change <= MAX_ACCURACY_CHANGE + 1e-12  # 0.5 points, as rounded

    def to_json(self) -> dict:
        bulky = ("int8_static",)  # static int8 ranges (findbox.score.int8_static): last, after what people read
        return {**{k: v for k, v in self.extra.items() if k not in bulky}, "weights": self.weights,
                "instances": self.instances, "machine_flags": sorted(self.machine_flags),
                "rule": {"min_same_box": MIN_SAME_BOX, "max_accuracy_change": MAX_ACCURACY_CHANGE},
                "results": [_row(m) for m in self.results], **{k: self.extra[k] for k in bulky if k in self.extra}}

    @classmethod
    def from_json(cls, data: dict, where: str) -> Calibration:
        """Parse a record; a field of the wrong shape raises ValueError naming it."""
        known = {"weights", "results", "machine_flags", "instances", "rule"}
        try:
            weights = {str(k): str(v) for k, v in dict(data["weights"]).items()}
            results = tuple(Measured(str(r["precision"]), str(r["backend"]), float(r["same_box"]),
                                     float(r["accuracy"]), r.get("instances_per_s"),
                                     None if r.get("detector") is None else str(r["detector"]))
                            for r in data["results"])
            flags = frozenset(str(f) for f in data.get("machine_flags", []))
            instances = int(data.get("instances", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: expected a findbox calibration record (weights, results), got a file "
                             f"without them ({type(exc).__name__}: {exc})") from None
        return cls(weights, results, flags, instances, {k: v for k, v in data.items() if k not in known})


def _row(m: Measured) -> dict:
    """A result as JSON: a scorer row without the detector field it does not use."""
    return {k: v for k, v in vars(m).items() if k != "detector" or v is not None}


def weights_files(scorer_dir: Path) -> list[Path]:
    """The weights files of a save_pretrained folder, sorted by name."""
    return sorted({p for pattern in WEIGHTS_PATTERNS for p in Path(scorer_dir).glob(pattern) if p.is_file()})


def weights_hashes(scorer_dir: Path) -> dict[str, str]:
    """{weights file name: sha256 hex} of the folder's weights files."""
    return {p.name: _sha256(str(p), *_stat_key(p)) for p in weights_files(scorer_dir)}


def detector_sha256(path: str | Path) -> str:
    """sha256 hex of a detector checkpoint, the key of a record's detector row (cached on size and mtime)."""
    return _sha256(str(path), *_stat_key(Path(path)))


def file_sha256(path: Path) -> str:
    """sha256 hex of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stat_key(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    # keyed on size and mtime too: a load reads the record several times (detector, scorer, ready line),
    # and a base-size checkpoint takes a second to hash; a rewritten file gets hashed again
    return file_sha256(Path(path))


def read_calibration(scorer_dir: str | Path | None) -> Calibration | None:
    """The folder's calibration record when it was made on these weights; else None.

    No record: None, silently (the caller says what auto does without one). A record that does not
    parse, or that names other weights, is ignored with a warning saying why.
    """
    if scorer_dir is None or not Path(scorer_dir).is_dir():
        return None
    path = Path(scorer_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    return _read_checked(str(path), *_stat_key(path), tuple(sorted(weights_hashes(Path(scorer_dir)).items())))


@functools.lru_cache(maxsize=16)
def _read_checked(path: str, size: int, mtime_ns: int, hashes: tuple[tuple[str, str], ...]) -> Calibration | None:
    # cached on the record's and the weights' state, so its warning is logged once per state, not once per read
    try:
        record = Calibration.from_json(json.loads(Path(path).read_text()), path)
    except (OSError, ValueError) as exc:
        log.warning("calibration record %s ignored: %s", path, exc)
        return None
    if record.weights != dict(hashes):
        log.warning("calibration record %s ignored: it was measured on other weights (%s), not this folder's "
                    "(%s); run `findbox calibrate` again for these", path, _short(record.weights), _short(dict(hashes)))
        return None
    return record


def _short(hashes: dict[str, str]) -> str:
    return ", ".join(f"{name} sha256 {digest[:12]}" for name, digest in hashes.items()) or "no weights files"


def write_calibration(scorer_dir: Path, record: Calibration) -> Path:
    """Write the record beside the weights, atomically (a server reading it never sees half a file)."""
    from findbox.score.onnx import atomic_file

    target = Path(scorer_dir) / CALIBRATION_FILE
    with atomic_file(target) as tmp:
        Path(tmp).write_text(json.dumps(record.to_json(), indent=1) + "\n")
        Path(tmp).chmod(0o644)  # mkstemp makes it private; a server running as another user must read it
    return target
