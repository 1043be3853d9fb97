"""Hand-made hostile requests against a real `findbox serve`: each one's status and error field.

    .venv/bin/python benchmarks/hostile.py                       # starts `findbox serve` (the demo bundle)
    .venv/bin/python benchmarks/hostile.py --url http://127.0.0.1:5004

Without --url it starts `findbox serve` with its defaults (the bundled demo models) on a free
loopback port. Every case is sent to /v1/ground (the one with every candidate, so a frame
question such as "which GIF frame was used" can be read from `image_wh` and the boxes).
Any 5xx is a defect. Writes the table as JSON (--out, default results/ops_hostile.json)
with the machine's load average beside it.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402
from load import free_port, require_loopback, scene_b64, wait_ready  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A PNG whose header claims width x height RGB pixels: a few hundred bytes on the wire.

    The IDAT holds the first rows only (zeros); a decoder that trusts the header allocates
    width * height * 3 bytes (7.5 GB here) before it finds the data short.
    """
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    rows = zlib.compress(b"\0" * (1 + 3 * width) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def cases() -> list[tuple[str, object, str | None]]:
    """(name, JSON body or raw bytes, content type) for each hostile case."""
    scene = scene_b64(7, 1520, 870)
    scene_jpeg = base64.b64decode(scene)
    rgb = Image.open(io.BytesIO(scene_jpeg)).convert("RGB")
    small = rgb.resize((320, 184))

    def one(image_b64: str, caption: str = "grey missile") -> dict:
        return {"instances": [{"key": 0, "caption": caption, "b64": image_b64}]}

    gray16 = Image.fromarray(np.asarray(small.convert("L"), np.uint16) * 257)  # mode I;16
    # two frames of different sizes and colours: which one the server used shows in image_wh
    frames = [Image.new("RGB", (320, 184), (200, 40, 40)), Image.new("RGB", (320, 184), (40, 40, 200))]
    frames[1].paste(small, (0, 0))
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return [
        ("decompression bomb: PNG header claiming 50000x50000", one(b64(png_bomb())), None),
        ("decompression bomb: PNG 7000x7000 (49 MP, just over the 40 MP cap)", one(b64(png_bomb(7000, 7000))), None),
        ("truncated JPEG (first half of the file)", one(b64(scene_jpeg[: len(scene_jpeg) // 2])), None),
        ("JPEG header only (first 200 bytes)", one(b64(scene_jpeg[:200])), None),
        ("16-bit greyscale PNG", one(b64(encode(gray16, "PNG"))), None),
        ("16-bit RGB PNG (hand-written IHDR, bit depth 16)", one(b64(png16_rgb(64, 48))), None),
        ("CMYK JPEG", one(b64(encode(small.convert("CMYK"), "JPEG", quality=90))), None),
        ("animated GIF, 2 frames", one(b64(gif)), None),
        ("palette PNG with transparency", one(b64(encode(small.convert("P"), "PNG", transparency=0))), None),
        ("RGBA PNG", one(b64(encode(small.convert("RGBA"), "PNG"))), None),
        ("image of 1x1 px", one(b64(encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"))), None),
        ("image of 1x10000 px", one(b64(encode(Image.new("RGB", (1, 10_000), (9, 9, 9)), "PNG"))), None),
        ("not an image (text)", one(b64(b"hello, this is not an image")), None),
        ("invalid base64", one("@@@not base64@@@"), None),
        ("empty b64", one(""), None),
        ("base64 with a data: prefix", one("data:image/jpeg;base64," + scene), None),
        ("base64 with newlines every 76 chars", one("\n".join(scene[i:i + 76] for i in range(0, len(scene), 76))),
         None),
        ("huge caption (100k chars)", one(scene, "grey missile " * 7700), None),
        ("empty caption", one(scene, ""), None),
        ("unicode caption: emoji", one(scene, "\U0001F681 red and white helicopter \U0001F525"), None),
        ("unicode caption: RTL (Arabic, Hebrew)", one(scene, "\u0637\u0627\u0626\u0631\u0629 \u05de\u05e1\u05d5\u05e7"),
         None),
        ("unicode caption: NUL and control chars", one(scene, "grey\x00missile\x1b[31m\r\n"), None),
        ("unicode caption: lone surrogate (JSON \\ud800)",
         b'{"instances": [{"caption": "a\\ud800b", "b64": "' + scene.encode() + b'"}]}', "application/json"),
        ("NaN in JSON: {\"instances\": NaN}", b'{"instances": NaN}', "application/json"),
        ("Infinity as a key: {\"key\": Infinity}",
         b'{"instances": [{"key": Infinity, "caption": "x", "b64": "' + scene.encode() + b'"}]}', "application/json"),
        ("number where a string is expected (caption: 5)", {"instances": [{"caption": 5, "b64": scene}]}, None),
        ("number where a string is expected (b64: 5)", {"instances": [{"caption": "x", "b64": 5}]}, None),
        ("empty instances list", {"instances": []}, None),
        ("instances is an object", {"instances": {"caption": "x", "b64": scene}}, None),
        ("missing b64", {"instances": [{"caption": "x"}]}, None),
        ("300 instances (cap 256)", {"instances": [{"caption": "x", "b64": scene}] * 300}, None),
        ("256 instances of one image (at the cap)",
         {"instances": [{"key": k, "caption": f"object {k}", "b64": scene} for k in range(256)]}, None),
        ("deeply nested JSON (100k [)", b"[" * 100_000 + b"]" * 100_000, "application/json"),
        ("not JSON", b"instances=1", "application/json"),
        ("body as text/plain", json.dumps(one(scene)).encode(), "text/plain"),
        ("invalid UTF-8 in JSON", b'{"instances": [{"caption": "\xff\xfe", "b64": "x"}]}', "application/json"),
    ]


def png16_rgb(width: int, height: int) -> bytes:
    """A real 16-bit-per-channel RGB PNG (PIL writes 16-bit greyscale only)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65535, (height, width, 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\0" + row.tobytes() for row in pixels)
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")


def send(http, url: str, body: object, content_type: str | None) -> dict:
    start = time.perf_counter()
    if isinstance(body, bytes):
        r = http.post(url + "/v1/ground", content=body, headers={"content-type": content_type or "application/json"})
    else:
        r = http.post(url + "/v1/ground", json=body)
    row = {"status": r.status_code, "ms": round((time.perf_counter() - start) * 1000, 1)}
    try:
        answer = r.json()
    except ValueError:
        return {**row, "body": r.text[:200]}
    if r.status_code == 200:
        first = answer["results"][0] if answer["results"] else None
        row.update(results=len(answer["results"]),
                   first=None if first is None else {"image_wh": first["image_wh"], "box": first["box"],
                                                     "fallback": first["fallback"],
                                                     "candidates": len(first["candidates"])})
    else:
        row.update(field=answer.get("field"), index=answer.get("index"), detail=str(answer.get("detail"))[:160])
    return row


def main() -> int:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (loopback only); default: start `findbox serve`")
    parser.add_argument("--server-args", default="", help="extra `findbox serve` options for the started server")
    parser.add_argument("--out", default=str(RESULTS / "ops_hostile.json"))
    args = parser.parse_args()

    proc = None
    if args.url:
        require_loopback(args.url)
        url = args.url.rstrip("/")
    else:
        port = free_port()
        cmd = [sys.executable, "-m", "findbox.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning", *args.server_args.split()]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        wait_ready(url, proc, timeout=300)
        with httpx.Client(timeout=600) as http:
            for name, body, content_type in cases():
                row = {"case": name, **send(http, url, body, content_type)}
                rows.append(row)
                print(f"{row['status']}  {row.get('field') or '-':10} {row['ms']:>9} ms  {name}: "
                      f"{row.get('detail') or row.get('first')}", flush=True)
            health = http.get(url + "/health").status_code
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)
    server_errors = sum(r["status"] >= 500 for r in rows)
    out = {"url": None if proc else url, "server": "findbox serve " + args.server_args if proc else "given",
           "load_average": os.getloadavg(), "cases": len(rows), "server_errors": server_errors,
           "health_after": health, "rows": rows, "command": " ".join([".venv/bin/python", *sys.argv])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, out)
    print(f"{len(rows)} cases, {server_errors} server errors (5xx); /health after: {health}; wrote {args.out}")
    return 1 if server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
