"""How much disk the virtual environment takes, by distribution, and how much of it a serving-only
install needs (findbox's base requirements and what they pull in, without the extras).

    .venv/bin/python benchmarks/install_size.py   # -> benchmarks/results/install_size.json

Sizes are the files each installed distribution lists (its RECORD), in bytes on disk; "cuda" are the
nvidia-* and triton wheels torch pulls in on Linux, unused on a CPU-only machine.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from common import RESULTS, write_result


def dist_sizes() -> dict[str, int]:
    """Canonical distribution name -> bytes of the files it installed."""
    sizes = {}
    for dist in md.distributions():
        total = 0
        for f in dist.files or ():
            path = Path(dist.locate_file(f))
            if path.is_file():
                total += path.stat().st_size
        sizes[canonicalize_name(dist.metadata["Name"])] = sizes.get(canonicalize_name(dist.metadata["Name"]), 0) + total
    return sizes


def closure(name: str, extras: tuple[str, ...] = ()) -> set[str]:
    """`name` and every distribution its requirements (with `extras`) pull in, as installed here."""
    seen: set[str] = set()
    todo = [(name, extras)]
    while todo:
        current, wanted = todo.pop()
        key = canonicalize_name(current)
        if key in seen:
            continue
        try:
            requires = md.requires(current) or []
        except md.PackageNotFoundError:
            continue  # a requirement whose marker excluded it at install time
        seen.add(key)
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (*wanted, "")):
                continue
            todo.append((req.name, tuple(req.extras)))
    return seen


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    sizes = dist_sizes()
    base = closure("findbox")
    everything = closure("findbox", ("test",))
    cuda = {n for n in sizes if n.startswith("nvidia-") or n == "triton"}
    gb = 1e9
    venv = Path(sys.prefix)
    fields = {
        "venv": str(venv.name),
        "venv_bytes": tree_bytes(venv),
        "venv_gb": round(tree_bytes(venv) / gb, 2),
        "serve_only_gb": round(sum(sizes.get(n, 0) for n in base) / gb, 2),
        "serve_only_without_cuda_gb": round(sum(sizes.get(n, 0) for n in base - cuda) / gb, 2),
        "cuda_wheels_gb": round(sum(sizes[n] for n in cuda) / gb, 2),
        "all_extras_gb": round(sum(sizes.get(n, 0) for n in everything) / gb, 2),
        "largest": {n: round(s / gb, 3) for n, s in sorted(sizes.items(), key=lambda kv: -kv[1])[:15]},
        "platform": sys.platform,
        "cpu_count": os.cpu_count(),
    }
    write_result(RESULTS / "install_size.json", fields)
    print({k: v for k, v in fields.items() if k != "largest"})


if __name__ == "__main__":
    main()
