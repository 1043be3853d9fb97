"""`findbox train scorer`: fine-tune SigLIP on ground-truth crops with a real contrastive batch.

The recipe is the original's (FACTS, "Training recipes"): all of SigLIP, sigmoid loss,
AdamW lr 2e-5 betas (0.9, 0.99) weight decay 1e-4, 10% linear warmup then cosine, bf16,
5 epochs, batch 960 in micro-batches of 12. Two things are fixed: the batch of 960 is the
loss's real negative set (GradCache over micro-batches, embeddings gathered across GPUs,
see `gradcache.py`), and identical captions are positives (`findbox.train.loss`).

    findbox crops --data data/vlm.jsonl --out crops/ [--upscaler realesr-general-x4v3.pth --scorer siglip-large-patch16-384/]
    findbox train scorer --init siglip-large-patch16-384/ --crops crops/ --out scorer/
    accelerate launch --multi_gpu --num_processes 4 -m findbox.cli train scorer ...   # DDP
    (FSDP: `accelerate config`, choose FSDP, then the same `accelerate launch -m findbox.cli ...`)

Crops are preprocessed exactly as the server does (`Scorer.preprocess`: resize, then
pixel-level augmentation on uint8, then normalise), captions through `Scorer.tokenize`.
Writes OUT/ as a save_pretrained folder (model, tokenizer, processor) that
`TransformersScorer.from_pretrained` and `transformers.AutoModel.from_pretrained` load, plus
OUT/train_log.jsonl, OUT/metrics.json and OUT/train_config.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import functools
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from findbox.cli import add_options, config_from_args
from findbox.config import Precision, _check_range, _enum, option
from findbox.train.augs import AugPreset

LOG = logging.getLogger("findbox.train.scorer")


# --- config -------------------------------------------------------------------------------------


class BatchBy(str, enum.Enum):
    CROP = "crop"  # a seeded permutation of crops: negatives mostly from other images
    IMAGE = "image"  # whole images: each caption also meets the other objects of its own scene


class Freeze(str, enum.Enum):
    NONE = "none"  # the original's best: fine-tune both towers
    TEXT = "text"  # cheap and nearly as good in the original (0.892 -> 0.888)
    VISION = "vision"  # costs a lot in the original; for experiments


PRECISIONS = (Precision.AUTO, Precision.BF16, Precision.FP16, Precision.FP32)  # autocast modes accelerate offers

# parameter name prefixes of each tower (SigLIP and CLIP layouts)
TOWER_PREFIXES = {
    Freeze.TEXT: ("text_model.", "text_projection."),
    Freeze.VISION: ("vision_model.", "visual_projection."),
}


# --precision auto on a CPU that multiplies bf16 in hardware (avx512_bf16, AMX): bf16 autocast, fp32 master
# weights, for towers at least this wide. Measured (benchmarks/train_speed.py, docs/TRAIN_SCORER.md "Training
# speed"): a base-size SigLIP (width 768) trained an epoch 2.1x faster in bf16 with the same losses; the demo's
# small one (width 128) 7% slower, its matrices too small for AMX to pay, and it reached the same accuracy in
# either (two seeds from random weights). Widths in between were not measured, so they stay fp32.
AUTO_BF16_MIN_WIDTH = 768


def auto_training_precision(device_type: str, cpu_flags: set[str] | frozenset[str], cuda_bf16: bool = False,
                            width: int | None = None) -> Precision:
    """What `--precision auto` trains in: bf16 on a GPU that has it (the original's), else fp16 with loss scaling;
    on the CPU bf16 only where it runs in hardware (emulated bf16 is slower than fp32) and the image tower is at
    least `AUTO_BF16_MIN_WIDTH` wide (`width`: its hidden size; None = unknown). A pure function, so every case
    is testable."""
    from findbox.device import BF16_FLAGS

    if device_type == "cuda":
        return Precision.BF16 if cuda_bf16 else Precision.FP16
    if (device_type == "cpu" and {f.lower() for f in cpu_flags} & BF16_FLAGS
            and width is not None and width >= AUTO_BF16_MIN_WIDTH):
        return Precision.BF16
    return Precision.FP32


def tower_width(folder: str | Path) -> int | None:
    """The image tower's hidden size from a save_pretrained folder's config.json (SigLIP and CLIP), or None."""
    try:
        width = json.loads((Path(folder) / "config.json").read_text()).get("vision_config", {}).get("hidden_size")
    except (OSError, ValueError, AttributeError):
        return None
    return width if isinstance(width, int) else None


def resolve_training_precision(precision: Precision, device: torch.device, width: int | None = None) -> Precision:
    """AUTO -> this machine's choice for a tower this wide (`auto_training_precision`); any other as given."""
    if precision != Precision.AUTO:
        return precision
    from findbox.device import cpu_flags

    on_gpu = device.type == "cuda"
    return auto_training_precision(device.type, cpu_flags() if device.type == "cpu" else set(),
                                   on_gpu and torch.cuda.is_bf16_supported(), width)


def parse_betas(text: str) -> tuple[float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers like 0.9,0.99, got {text!r}") from None
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected two numbers like 0.9,0.99, got {text!r}")
    return values  # type: ignore[return-value]


def _demo_scorer() -> Path:
    """The bundled demo scorer's folder (`--init demo`)."""
    from findbox.bundle import bundled_paths

    folder = bundled_paths()["scorer"]
    if folder is None:
        raise ValueError("init: expected a scorer folder; 'demo' names the bundled demo scorer, which this "
                         "installation lacks, got 'demo'")
    return folder


@dataclass
class TrainScorerConfig:
    # the model to start from; offline, the bundled demo scorer is the one at hand
    init: str = option(help="save_pretrained SigLIP folder to fine-tune, or 'demo' for the bundled demo scorer "
                            "(./demo for a folder of that name)")
    # several folders train as one set: e.g. data at two noise levels, or day and night captures
    crops: list[str] = option(help="folder made by `findbox crops`; repeat to train on several as one set")
    out: str = option(help="output folder: the trained model (save_pretrained) and logs")
    epochs: int = option(5, help="epochs (10 overfit in the original)")  # the original: 5 is enough, 10 overfits
    # 0: every epoch runs and the last one's weights are saved (what the recipes measured); N: an epoch that
    # does not move validation accuracy costs its time for nothing, and the original overfit after 5
    patience: int = option(0, help="stop once validation accuracy has not beaten its best (by more than "
                           "--min-delta) for this many epochs, and keep the best epoch's weights; 0 = run every epoch")
    min_delta: float = option(0.001, help="the gain in validation accuracy that counts as better (--patience)")
    lr: float = option(2e-5, help="peak AdamW learning rate")  # the original's; SigLIP is pretrained, small steps
    # a linear ramp, then cosine to 0
    warmup: float = option(0.1, help="warmup fraction of all steps")
    # the original's; on weight matrices only (not norms, biases, scale)
    weight_decay: float = option(1e-4, help="AdamW weight decay of the weight matrices")
    betas: tuple[float, float] = option((0.9, 0.99), parse=parse_betas, show=lambda b: ",".join(f"{v:g}" for v in b),
                                        help="AdamW betas")  # the original's
    # each crop is scored against all batch captions
    batch: int = option(960, help="global contrastive batch over all devices: the loss's negatives")
    # bounds memory, not the batch
    micro_batch: int = option(12, help="crops per forward/backward on one device; memory only")
    # its pixel-level part; strong noise suits the noisy test
    augs: AugPreset = option(AugPreset.V2, help="augmentation preset, its pixel-level transforms")
    # crop until the ablation (docs/TRAIN_SCORER.md) shows image batches help
    batch_by: BatchBy = option(BatchBy.CROP, help="build batches from shuffled crops or from whole images")
    # 0: the sigmoid loss alone, the original's
    listwise_weight: float = option(0.0, help="weight of the per-image softmax over its crops for each caption")
    freeze: Freeze = option(Freeze.NONE, help="tower to keep fixed")
    # bf16 on GPU (the original's); on the CPU by measurement (`auto_training_precision`)
    precision: Precision = option(Precision.AUTO, choices=tuple(p.value for p in PRECISIONS),
                                  help="autocast of the forwards, weights stay fp32; auto: bf16 on GPU, on the CPU "
                                       "bf16 where it has bf16 matmuls and the image tower is base size or wider, "
                                       "else fp32")
    # under `accelerate launch` the launcher decides
    device: str = option("auto", help="auto, cpu, cuda or cuda:N")
    seed: int = option(0, help="seed of the batches, augmentations and initialisation")
    # PNG decoding, resizing and noise are CPU work
    workers: int = option(4, help="data loader processes per device")
    # None: the model family's default, the same one the server uses
    prompt: str | None = option(None, help="prompt template with {} (default: the model family's, as the server)")
    progress: bool = option(True, help="no progress bar")

    def __post_init__(self) -> None:
        if self.init == "demo":
            self.init = str(_demo_scorer())
        # one folder, or a list (an empty one is refused by load_crop_sets, before any step)
        self.crops = [self.crops] if isinstance(self.crops, (str, Path)) else list(self.crops)
        self.augs = _enum("augs", AugPreset, self.augs)
        self.freeze = _enum("freeze", Freeze, self.freeze)
        self.batch_by = _enum("batch_by", BatchBy, self.batch_by)
        self.precision = _enum("precision", Precision, self.precision)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {', '.join(p.value for p in PRECISIONS)}, "
                             f"got {self.precision.value!r}")
        _check_range("epochs", self.epochs, 1, 100_000)
        _check_range("patience", self.patience, 0, 100_000)
        _check_range("min_delta", self.min_delta, 0.0, 1.0)
        _check_range("lr", self.lr, 0.0, 1.0)
        _check_range("warmup", self.warmup, 0.0, 1.0)
        _check_range("weight_decay", self.weight_decay, 0.0, 10.0)
        _check_range("batch", self.batch, 1, 10_000_000)
        _check_range("micro_batch", self.micro_batch, 1, 10_000_000)
        _check_range("workers", self.workers, 0, 256)
        _check_range("listwise_weight", self.listwise_weight, 0.0, 1000.0)
        if self.lr <= 0:
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr}")
        self.betas = tuple(self.betas)  # a TOML file gives a list
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {self.betas}")
        if self.batch > self.micro_batch and self.batch % self.micro_batch:
            raise ValueError(
                f"batch: expected a multiple of micro_batch ({self.micro_batch}), got {self.batch} "
                f"(e.g. {self.batch - self.batch % self.micro_batch} or {self.batch + self.micro_batch - self.batch % self.micro_batch})"
            )
        if self.prompt is not None and "{}" not in self.prompt:
            raise ValueError(f"prompt: expected a template with {{}} for the caption, got {self.prompt!r}")


# --- setup: data, model, optimizer (every input check happens here, before any step) -----------


@dataclass
class Run:
    config: TrainScorerConfig
    accelerator: object
    scorer: object  # TransformersScorer: the tokenizer, preprocessing and prompt the server uses
    towers: torch.nn.Module  # ScorerTowers, wrapped by accelerate (DDP/FSDP) when distributed
    optimizer: torch.optim.Optimizer
    scheduler: object
    captions: list[str]
    tokens: dict[str, torch.Tensor]  # (C, L) tokenized captions, row = caption id
    train_set: object  # scorer_data.CropSet
    val_set: object
    sampler: object  # scorer_data.RankBatches or RankImageBatches
    loader: torch.utils.data.DataLoader
    batch: int
    micro_batch: int
    total_steps: int
    crops_info: dict
    precision: Precision = Precision.FP32  # what --precision resolved to: the autocast dtype of every forward


def crops_record(folders: list[str]) -> dict:
    """The crops.json of the folders, checked to agree on how crops were made (upscaler, scale).

    Crops upscaled by one model and crops upscaled by another (or not at all) are different
    inputs; the server runs one of them, so training on a mix would teach the wrong one.
    Raises ValueError naming `crops` when they disagree.
    """
    infos = []
    for folder in folders:
        path = Path(folder) / "crops.json"
        infos.append(json.loads(path.read_text()) if path.is_file() else {})
    made = [(json.dumps(i.get("upscaler"), sort_keys=True), i.get("scale", 1)) for i in infos]
    if len(set(made)) > 1:
        shown = "; ".join(f"{f}: upscaler {i.get('upscaler')}, scale {i.get('scale', 1)}" for f, i in zip(folders, infos))
        raise ValueError(f"crops: the folders were cut differently ({shown}); cut them all with the server's upscaler")
    return infos[0] | {"folders": [dict(folder=str(f), source=i.get("source"), crops=i.get("crops"))
                                    for f, i in zip(folders, infos)]}


def setup(config: TrainScorerConfig) -> Run:
    """Load and check everything. Raises ValueError (naming the field) on bad input."""
    from findbox.env import require
    require("accelerate", "train")
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from findbox.device import cpu_has_fast_bf16, resolve_device
    from findbox.score.transformers import TransformersScorer
    from findbox.train.augs import build_augs, describe_augs
    from findbox.train.gradcache import ScorerTowers
    from findbox.train.scorer_data import (CropDataset, RankBatches, RankImageBatches, check_caption_lengths,
                                           collate, load_crop_sets, pixel_level)

    # data
    captions, train_set, val_set = load_crop_sets(config.crops)
    crops_info = crops_record(config.crops)
    if not len(val_set):
        LOG.warning("crops: no val crop in %s; training without the validation figure", ", ".join(config.crops))

    # device and precision
    device = resolve_device(config.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # accelerate uses the current CUDA device of a single process
    precision = resolve_training_precision(config.precision, device, tower_width(config.init))
    if precision == Precision.FP16 and device.type != "cuda":
        raise ValueError("precision: fp16 needs a CUDA device (loss scaling); use bf16 or fp32 on the CPU")
    if precision == Precision.BF16 and device.type == "cpu" and not cpu_has_fast_bf16():
        LOG.warning("precision: this CPU has no bf16 matmuls in hardware (avx512_bf16, AMX); bf16 is emulated "
                    "here and usually slower than fp32")
    mixed = {Precision.FP32: "no", Precision.FP16: "fp16", Precision.BF16: "bf16"}[precision]
    # accelerate keeps one precision per process: a second training here (a notebook, a sweep) may ask another.
    # Only the precision state is cleared; the processes' (distributed) state stays.
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state()
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=mixed)
    world = accelerator.num_processes
    set_seed(config.seed)

    # model: loaded exactly as the server loads it; weights stay float32 (autocast does bf16/fp16)
    scorer = TransformersScorer.from_pretrained(config.init, device="cpu", dtype=torch.float32, prompt=config.prompt)
    check_caption_lengths([train_set, val_set], scorer)
    tokens = scorer.tokenize(captions)
    towers = ScorerTowers(scorer).train()
    if config.freeze != Freeze.NONE:
        prefixes = TOWER_PREFIXES[config.freeze]
        frozen = [p for n, p in scorer.model.named_parameters() if n.startswith(prefixes)]
        if not frozen:
            raise ValueError(f"freeze: {type(scorer.model).__name__} has no parameters under {prefixes}")
        for p in frozen:
            p.requires_grad_(False)

    # batch sizes: the global batch is the negative set; it cannot exceed the data
    batch = config.batch
    usable = len(train_set) - len(train_set) % world
    if batch > usable:
        LOG.warning("batch: %d is more than the %d train crops; using %d", batch, len(train_set), usable)
        batch = usable
    if batch < world or batch % world:
        raise ValueError(f"batch: expected a multiple of the number of processes ({world}), got {batch}")
    micro_batch = min(config.micro_batch, batch // world)

    transforms, dropped = pixel_level(build_augs(config.augs))
    if accelerator.is_main_process:
        LOG.info("augs %s (pixel-level part; dropped %s):\n%s", config.augs.value, dropped or "none",
                 describe_augs(transforms))
    if config.batch_by == BatchBy.IMAGE:
        sampler = RankImageBatches(train_set.image_groups(), batch, accelerator.process_index, world, config.seed)
    else:
        sampler = RankBatches(len(train_set), batch, accelerator.process_index, world, config.seed)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(config.workers, cpus)  # more loader processes than cores only adds contention
    loader = torch.utils.data.DataLoader(
        CropDataset(train_set, scorer.preprocess, transforms), batch_sampler=sampler, collate_fn=collate,
        num_workers=workers, persistent_workers=workers > 0, pin_memory=accelerator.device.type == "cuda",
    )

    # optimizer and schedule
    from transformers import get_cosine_schedule_with_warmup

    trainable = [(n, p) for n, p in towers.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in trainable if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for n, p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas))
    towers, optimizer = accelerator.prepare(towers, optimizer)
    total_steps = sampler.steps(config.epochs)
    # stepped once per optimizer step by hand: accelerate's prepared scheduler steps once per process
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(config.warmup * total_steps), total_steps)
    return Run(config, accelerator, scorer, towers, optimizer, scheduler, captions, tokens, train_set, val_set,
               sampler, loader, batch, micro_batch, total_steps, crops_info, precision)


# --- one step -----------------------------------------------------------------------------------


class MicroBatches:
    """This rank's batch as model inputs, one micro-batch at a time, identical on every read.

    Normalisation (`CropPreprocess.normalize`, the server's) happens here, per micro-batch,
    so only uint8 crops of the whole batch are held in memory.
    """

    def __init__(self, pixels: torch.Tensor, caption_ids: torch.Tensor, run: Run):
        self.pixels, self.caption_ids, self.run = pixels, caption_ids, run
        self.size = run.micro_batch

    def __len__(self) -> int:
        return -(-len(self.pixels) // self.size)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        if not 0 <= k < len(self):
            raise IndexError(k)
        rows = slice(k * self.size, (k + 1) * self.size)
        device = self.run.accelerator.device
        # a crop without caption (-1) needs some text row; the loss ignores its column
        text_rows = self.caption_ids[rows].clamp(min=0)
        inputs = {name: t[text_rows].to(device) for name, t in self.run.tokens.items()}
        inputs["pixel_values"] = self.run.scorer.preprocess.normalize(self.pixels[rows].numpy()).to(device)
        return inputs


def train_step(run: Run, pixels: torch.Tensor, global_ids: np.ndarray, image_ids: np.ndarray | None = None):
    """One optimizer step on one global batch; this rank holds `pixels` ((n, H, W, 3) uint8) of it.

    global_ids, image_ids: (N,) caption and source-image ids of the global batch."""
    from findbox.train.gradcache import Collective, gradcache_backward
    from findbox.train.loss import scorer_loss

    rank, per_rank = run.accelerator.process_index, len(pixels)
    local_ids = torch.from_numpy(global_ids[rank * per_rank : (rank + 1) * per_rank])
    loss_fn = functools.partial(scorer_loss, listwise_weight=run.config.listwise_weight,
                                image_ids=None if image_ids is None else torch.from_numpy(image_ids))
    result = gradcache_backward(
        run.towers, MicroBatches(pixels, local_ids, run), torch.from_numpy(global_ids),
        Collective.from_accelerator(run.accelerator, run.towers), loss_fn=loss_fn,
    )
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return result


# --- validation: the task's own decision on ground-truth crops ----------------------------------


@torch.no_grad()
def validate(run: Run):
    """GroundingAccuracy on the val crops, preprocessed as the server does (no augmentation).

    Every rank runs all of it (FSDP needs every rank in each forward; val is small)."""
    from findbox.images import load_image_file
    from findbox.train.scorer_data import grounding_accuracy

    if not len(run.val_set):
        return None
    run.towers.eval()
    device = run.accelerator.device
    chunk = max(run.micro_batch, 32)
    image_emb = []
    for start in range(0, len(run.val_set), chunk):
        stop = min(start + chunk, len(run.val_set))
        pixels = run.scorer.preprocess([load_image_file(run.val_set.path(i)) for i in range(start, stop)])
        image_emb.append(run.towers(pixel_values=pixels.to(device))[0].float().cpu())
    text_emb = []
    n_captions = len(run.captions)
    for start in range(0, n_captions, chunk):
        inputs = {k: v[start : start + chunk].to(device) for k, v in run.tokens.items()}
        text_emb.append(run.towers(**inputs)[1].float().cpu())
    run.towers.train()
    return grounding_accuracy(torch.cat(image_emb), torch.cat(text_emb), run.val_set.caption_ids,
                              run.val_set.image_groups())


# --- the loop -----------------------------------------------------------------------------------


def fit(run: Run) -> dict:
    from findbox.logs import progress

    config, accelerator = run.config, run.accelerator
    out = Path(config.out)
    main_process = accelerator.is_main_process
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(_config_record(run), indent=2) + "\n")
        log_file = open(out / "train_log.jsonl", "w", encoding="utf-8")

    def log(record: dict) -> None:
        if main_process:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()

    epochs: list[dict] = []
    val_started = time.monotonic()
    acc = validate(run)
    if acc is not None:
        epochs.append({"epoch": 0, **acc.to_dict(), "val_s": round(time.monotonic() - val_started, 3)})
        log(epochs[-1])
        if main_process:
            LOG.info("epoch 0 (before training): val accuracy %.4f (chance %.4f)", acc.accuracy, acc.chance)
    bar = progress(total=run.total_steps, desc="train scorer", unit="step", disable=not (main_process and config.progress))
    step, started = 0, time.monotonic()
    # --patience: the best validation accuracy so far, its epoch (its weights saved in `out` as they came)
    best = (acc.accuracy if acc is not None else -1.0, 0)
    stopped_after = None
    if config.patience and acc is not None:
        save(run, out)  # the starting weights, kept if no epoch beats them
    image_ids = run.train_set.image_ids
    for epoch in range(1, config.epochs + 1):
        run.sampler.set_epoch(epoch)
        global_batches = run.sampler.global_batches()
        losses = []
        epoch_started = time.monotonic()
        for global_batch, (pixels, _) in zip(global_batches, run.loader):
            ids = run.train_set.caption_ids[global_batch]
            lr = run.scheduler.get_last_lr()[0]
            result = train_step(run, pixels, ids, image_ids[global_batch])
            loss = result.loss
            step += 1
            losses.append(loss)
            log({"step": step, "epoch": epoch, "loss": loss, "lr": lr, "batch": len(ids),
                 "logit_scale": result.logit_scale, "logit_bias": result.logit_bias,
                 "seconds": round(time.monotonic() - started, 3)})
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        # time per epoch, its training steps and its validation apart: what --precision and --workers change
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)),
                  "train_s": round(time.monotonic() - epoch_started, 3)}
        val_started = time.monotonic()
        acc = validate(run)
        record["val_s"] = round(time.monotonic() - val_started, 3)
        if acc is not None:
            record.update(acc.to_dict())
            if main_process:
                bar.write(f"epoch {epoch}: loss {record['train_loss']:.4f}, val accuracy {acc.accuracy:.4f} "
                          f"(chance {acc.chance:.4f}, {acc.queries} captions on {acc.images} images)")
        epochs.append(record)
        log(record)
        if config.patience and acc is not None:
            if acc.accuracy > best[0] + config.min_delta:
                best = (acc.accuracy, epoch)
                save(run, out)  # every rank validated the same weights, so every rank takes this branch
            elif epoch - best[1] >= config.patience:
                stopped_after = epoch
                if main_process:
                    bar.write(f"epoch {epoch}: no gain over epoch {best[1]}'s {best[0]:.4f} for {config.patience} "
                              f"epoch(s) (--patience): stopping, keeping epoch {best[1]}'s weights")
                break
    bar.close()

    # save
    metrics = {
        "epochs": epochs,
        "steps": step,
        "batch": run.batch,
        "micro_batch": run.micro_batch,
        "processes": accelerator.num_processes,
        "precision": run.precision.value,
        "train_crops": len(run.train_set),
        "val_crops": len(run.val_set),
        "seconds": round(time.monotonic() - started, 1),
    }
    kept = epochs[-1] if epochs else {}
    if config.patience and acc is not None:
        kept = next(e for e in epochs if e["epoch"] == best[1])
        metrics["early_stop"] = {"patience": config.patience, "min_delta": config.min_delta, "best_epoch": best[1],
                                 "stopped_after_epoch": stopped_after, "epochs_run": epochs[-1]["epoch"]}
    for key in ("val_accuracy", "val_chance", "val_queries", "val_images"):
        if key in kept:
            metrics[key] = kept[key]
    if not config.patience or acc is None:
        save(run, out)
    if main_process:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        log_file.close()
    accelerator.wait_for_everyone()
    return metrics


def save(run: Run, out: Path) -> None:
    """A save_pretrained folder with clean keys (no wrapper prefixes), plus tokenizer and processor."""
    from findbox.train.convert import clean_state_dict

    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    state = accelerator.get_state_dict(run.towers)  # the full state on the main process, also under FSDP
    if not accelerator.is_main_process:
        return
    model = accelerator.unwrap_model(run.towers).model
    state = {k.removeprefix("model."): v for k, v in clean_state_dict(state).items()}
    model.save_pretrained(str(out), state_dict=state)
    _save_processor(run.config.init, out, run.scorer)


def _save_processor(init: str, out: Path, scorer) -> None:
    """The init folder's tokenizer and image processor, so the server preprocesses as training did."""
    from findbox.env import ensure_offline
    ensure_offline()  # transformers reads the offline variables at import
    from transformers import AutoImageProcessor, AutoProcessor

    try:
        AutoProcessor.from_pretrained(init, local_files_only=True).save_pretrained(str(out))
    except Exception as exc:  # a model without a combined processor: save both parts
        LOG.info("no combined processor in %s (%s); saving tokenizer and image processor", init, exc)
        scorer.tokenizer.save_pretrained(str(out))
        AutoImageProcessor.from_pretrained(init, local_files_only=True).save_pretrained(str(out))
    from findbox.score.transformers import write_scorer_settings

    write_scorer_settings(out, scorer)  # e.g. whether the text tower saw an attention mask in training


def _config_record(run: Run) -> dict:
    record = {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in dataclasses.asdict(run.config).items()}
    record.update(precision_used=run.precision.value, workers_used=run.loader.num_workers, batch_used=run.batch,
                  micro_batch_used=run.micro_batch, processes=run.accelerator.num_processes,
                  prompt_used=run.scorer.prompt, text_length=run.scorer.max_text_length,
                  input_size_hw=list(run.scorer.preprocess.size_hw), captions=len(run.captions),
                  crops_upscaler=run.crops_info.get("upscaler"), crops_scale=run.crops_info.get("scale", 1))
    return record


def train(config: TrainScorerConfig) -> dict:
    """Fine-tune, validate each epoch, save to config.out; returns metrics. Bad input raises
    ValueError before the first step."""
    return fit(setup(config))


# --- command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, TrainScorerConfig)


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args, TrainScorerConfig)
    run = setup(config)
    metrics = fit(run)
    if run.accelerator.is_main_process:
        summary = {k: metrics[k] for k in ("val_accuracy", "val_chance", "steps", "seconds") if k in metrics}
        print(f"findbox train scorer: saved {config.out} {json.dumps(summary)}")
    return 0
