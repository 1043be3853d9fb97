"""An ultralytics detection data set (data.yaml) -> an ImportSet.

    data.yaml     path: ROOT (default: the yaml's folder; relative to it), train/val/test: a folder of
                  images, a .txt list of image paths, or a list of those; names: {0: dog, ...} or [dog, ...]
    ROOT/images/train/a.jpg  ->  ROOT/labels/train/a.txt   ultralytics' rule: the last /images/ -> /labels/
    a.txt         one "class cx cy w h" row a box, normalised to the image's size; a row of more
                  numbers is a polygon (segmentation labels), taken as its bounding box, as ultralytics does

The caption of a box is its class name, the annotation's split the yaml key it came from. Sizes
come from each image's header, upright (its EXIF orientation applied, as ultralytics and findbox
read it). An image without a label file, or with an empty one, is a background line.
"""

from __future__ import annotations

import os
from pathlib import Path

from findbox.data.importing import ImportSet, image_name, image_wh_upright

SPLIT_KEYS = ("train", "val", "test")
IMAGE_SUFFIXES = frozenset({".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm"})


def _names(data: dict, yaml_path: Path) -> dict[int, str]:
    names = data.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names or not all(isinstance(v, str) for v in names.values()):
        raise ValueError(f"{yaml_path}: names: expected class names as a list or {{id: name}}, got {names!r}")
    try:
        return {int(k): v for k, v in names.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{yaml_path}: names: expected integer class ids, got {list(names)}") from None


def _image_files(entry: str, root: Path, yaml_path: Path, key: str) -> list[Path]:
    """The image files one train/val/test entry names: a folder (searched recursively) or a .txt list."""
    path = Path(entry) if Path(entry).is_absolute() else root / entry
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if path.is_file() and path.suffix == ".txt":
        files = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:  # ultralytics: "./x.jpg" is relative to the list's folder
                files.append(path.parent / line[2:] if line.startswith("./") else Path(line) if Path(line).is_absolute()
                             else root / line)
        return files
    raise ValueError(f"{yaml_path}: {key}: expected a folder of images or a .txt list of them, got {path} "
                     f"({'missing' if not path.exists() else 'not a folder or .txt'})")


def label_path(image: Path) -> Path:
    """ultralytics' rule: the last /images/ of the path becomes /labels/, the suffix .txt."""
    text = str(image)
    sep = f"{os.sep}images{os.sep}"
    if sep in text:
        head, tail = text.rsplit(sep, 1)
        text = f"{head}{os.sep}labels{os.sep}{tail}"
    return Path(text).with_suffix(".txt")


def read_yolo(yaml_path: str | Path, splits: tuple[str, ...] = ()) -> ImportSet:
    """The data set's `splits` (default: every train/val/test key the yaml has) as an ImportSet;
    ValueError naming the file (and line) for a malformed yaml or label row or an unknown class."""
    import yaml
    from findbox.logs import progress as progress_bar  # off under --quiet, like every findbox bar

    yaml_path = Path(yaml_path)
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{yaml_path}: expected YAML, got {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{yaml_path}: expected a mapping with train/val and names, got {type(data).__name__}")
    names = _names(data, yaml_path)
    root = Path(data["path"]) if data.get("path") else yaml_path.parent
    root = root if root.is_absolute() else yaml_path.parent / root
    keys = splits or tuple(k for k in SPLIT_KEYS if data.get(k))
    for key in keys:
        if not data.get(key):
            raise ValueError(f"{yaml_path}: {key}: the yaml has no such split; it has "
                             f"{', '.join(k for k in SPLIT_KEYS if data.get(k)) or 'none'}")
    result = ImportSet("yolo", {"data": str(yaml_path), "root": str(root), "splits": ",".join(keys)})
    for key in keys:
        entries = data[key] if isinstance(data[key], list) else [data[key]]
        files = [p for entry in entries for p in _image_files(str(entry), root, yaml_path, key)]
        for path in progress_bar(files, desc=f"yolo {key}", unit="image", disable=len(files) < 200):
            _read_image(path, root, key, names, result)
    return result


def _read_image(path: Path, root: Path, split: str, names: dict[int, str], result: ImportSet) -> None:
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        relative = path.name  # a list may name files outside the root
    name = image_name(relative, str(path))
    if name in result.images:
        raise ValueError(f"{path}: listed twice (again under {split}); expected each image in one split")
    if not path.is_file():
        result.image(name, path, (1, 1), str(path))  # check_files names it as missing
        return
    image = result.image(name, path, image_wh_upright(path), str(path))
    labels = label_path(path)
    if not labels.is_file():
        return  # ultralytics: an image without labels is a background image
    w, h = image.image_wh
    for n, row in enumerate(labels.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{labels}:{n}"
        values = row.split()
        if not values:
            continue
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            raise ValueError(f"{where}: expected numbers 'class cx cy w h', got {row!r}") from None
        if len(numbers) < 5 or (len(numbers) > 5 and len(numbers) % 2 == 0):
            raise ValueError(f"{where}: expected 'class cx cy w h' or 'class x1 y1 x2 y2 ...' (a polygon), got {row!r}")
        cls = numbers[0]
        if not cls.is_integer() or int(cls) not in names:
            raise ValueError(f"{where}: class {values[0]} is not in the yaml's names ({min(names)}..{max(names)})")
        if len(numbers) == 5:
            cx, cy, bw, bh = numbers[1:]
            ltwh = ((cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h)
        else:  # a polygon's bounding box
            xs, ys = numbers[1::2], numbers[2::2]
            ltwh = (min(xs) * w, min(ys) * h, (max(xs) - min(xs)) * w, (max(ys) - min(ys)) * h)
        result.add_box(image, names[int(cls)], ltwh, f"{labels.name}:{n}", split=split)
