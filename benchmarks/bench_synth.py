"""Speed of `findbox synth`: images per second on one core, per noise level.

    taskset -c 0 .venv/bin/python benchmarks/bench_synth.py [--images 100] [--out benchmarks/results/synth.json]

Runs write_dataset into a temporary directory (render, noise, JPEG encode, file write)
with OpenCV and BLAS held to one thread; pin to one core with `taskset -c 0` as well.
Beside findbox's own noise and JPEG encode (numpy and OpenCV), times the equivalent
albumentations chain (GaussianBlur, GaussNoise, ISONoise, MultiplicativeNoise,
ImageCompression, each with the level's ranges) on the same clean renders: the reason
findbox.synth.noise does not use it.
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
from findbox.synth.noise import NOISE_SPECS, add_noise, encode_jpeg  # noqa: E402
from findbox.synth.scene import render_clean, scene_rngs  # noqa: E402


def albumentations_chain(level: NoiseLevel):
    """The albumentations chain that does what add_noise + encode_jpeg do at `level`, with its ranges (pixel units
    0-255 as fractions of 255 where albumentations wants them): blur, per-channel Gaussian noise, colour noise, a
    per-channel gain, JPEG at the level's qualities."""
    import albumentations as A

    spec = NOISE_SPECS[level]
    return A.Compose([
        A.GaussianBlur(sigma_limit=spec.blur_sigma, blur_limit=0, p=spec.blur_p),
        A.GaussNoise(std_range=(spec.read_std[0] / 255, spec.read_std[1] / 255), per_channel=True, p=1.0),
        A.ISONoise(color_shift=(spec.chroma_std[0] / 255, spec.chroma_std[1] / 255), intensity=(0.0, 0.0),
                   p=1.0 if spec.chroma_std[1] > 0 else 0.0),
        A.MultiplicativeNoise(multiplier=spec.gain, per_channel=True, elementwise=False, p=1.0),
        A.ImageCompression(quality_range=spec.jpeg_quality, p=1.0),
    ], seed=0)


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
        parts, chain, albu_ms = [0.0, 0.0, 0.0], albumentations_chain(level), 0.0
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
            if level != NoiseLevel.NONE:  # no noise to add: nothing to compare
                c = time.process_time()
                chain(image=clean.image)  # its ImageCompression also decodes the JPEG back, a few ms of it
                albu_ms += (time.process_time() - c) * 1000 / min(20, args.images)
        albu_ms = albu_ms if level != NoiseLevel.NONE else None
        print(f"{level.value:>8} {args.images / dt:7.1f} {args.images / dc:7.1f} {dc / args.images * 1000:7.1f}   "
              + " / ".join(f"{p:.1f}" for p in parts)
              + (f"   albumentations noise + JPEG {albu_ms:.1f} ms" if albu_ms is not None else ""))
        rows.append({"noise": level.value, "wall_images_per_s": args.images / dt, "cpu_images_per_s": args.images / dc,
                     "cpu_ms_scene_noise_jpeg": parts, "albumentations_cpu_ms_noise_jpeg": albu_ms})
    if args.out:
        write_result(args.out, {"images": args.images, "image_wh": [args.width, args.height], "seed": args.seed,
                                "cpu_affinity": cpus, "load_average": {"start": load, "end": os.getloadavg()[0]},
                                "rows": rows})


if __name__ == "__main__":
    main()
