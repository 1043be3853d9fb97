"""Speed of `findbox synth`: images per second on one core, per noise level.

    taskset -c 0 .venv/bin/python benchmarks/bench_synth.py [--images 100] [--out benchmarks/results/synth.json]

Runs write_dataset into a temporary directory (render, noise, JPEG encode, file write)
with OpenCV and BLAS held to one thread; pin to one core with `taskset -c 0` as well.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
from common import RESULTS, write_result  # noqa: E402

from findbox.synth import NoiseLevel, SynthConfig, write_dataset  # noqa: E402
from findbox.synth.noise import add_noise, encode_jpeg  # noqa: E402
from findbox.synth.scene import render_clean, scene_rngs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--width", type=int, default=1520)
    parser.add_argument("--height", type=int, default=870)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help=f"also write the figures with the machine and commit (e.g. {RESULTS / 'synth.json'})")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    cpus = sorted(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(f"{args.images} images {args.width}x{args.height}, one thread, cpu affinity {cpus}, load average {load:.1f}")
    print("images/s from wall time and from this process's CPU time (the fair one on a busy machine)")
    print(f"{'noise':>8} {'wall/s':>7} {'cpu/s':>7} {'cpu ms':>7}   cpu ms: clean / noise / jpeg (first 20)")
    rows = []
    for level in NoiseLevel:
        config = SynthConfig(width=args.width, height=args.height, noise=level)
        with tempfile.TemporaryDirectory() as tmp:
            write_dataset(tmp, config, 3, args.seed, progress=False)  # warm-up: LUTs, caches
            t0, c0 = time.perf_counter(), time.process_time()
            write_dataset(tmp, config, args.images, args.seed, force=True, progress=False)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
        parts = [0.0, 0.0, 0.0]
        for i in range(min(20, args.images)):
            _, noise_rng = scene_rngs(i, args.seed)
            t = [time.process_time()]
            clean = render_clean(config, i, args.seed)
            t.append(time.process_time())
            noisy, q = add_noise(clean.image, level, noise_rng)
            t.append(time.process_time())
            encode_jpeg(noisy, q)
            t.append(time.process_time())
            for j in range(3):
                parts[j] += (t[j + 1] - t[j]) * 1000 / min(20, args.images)
        print(f"{level.value:>8} {args.images / dt:7.1f} {args.images / dc:7.1f} {dc / args.images * 1000:7.1f}   "
              + " / ".join(f"{p:.1f}" for p in parts))
        rows.append({"noise": level.value, "wall_images_per_s": args.images / dt, "cpu_images_per_s": args.images / dc,
                     "cpu_ms_scene_noise_jpeg": parts})
    if args.out:
        write_result(args.out, {"images": args.images, "image_wh": [args.width, args.height], "seed": args.seed,
                                "cpu_affinity": cpus, "load_average": {"start": load, "end": os.getloadavg()[0]},
                                "rows": rows})


if __name__ == "__main__":
    main()
