#!/usr/bin/env python3
"""Train the small fixture-size HRNet-OCR on the generated sample set and export it.

Why: calibration and accuracy reports need a model whose predictions mean
something; the random-weight fixtures give flat, meaningless class maps, so an
INT8 build could lose all accuracy without any metric noticing. This trains the
same reduced configuration as ``models/fixtures/make_fixtures.py`` (branch width
8, one module and one block per stage, OCR mid/key 32/16; the network code is
``models/export_hrnet_ocr.py``) on ``calibration/sample`` (train split), on the
CPU in a few minutes, then writes ``models/sample/``:

* ``model.onnx``  legacy exporter, opset 13, static input [1, 3, 128, 256], official head;
* ``input.npy``   the golden input: the first val image, preprocessed (float32 NCHW);
* ``aux.npy``, ``out.npy``  onnxruntime's outputs on it (CPU, one intra-op thread);
* ``case.json``   training arguments, seed, epochs, time, and the FP32 val mIoU.

Training as HRNet-OCR trains: cross-entropy with ignore index 255 on the main
output plus 0.4 x the same loss on the aux (soft object region) output, logits
upsampled bilinearly to the label size, on random 128x128 crops with horizontal
flips. Inputs: the 256x512 images resized
bilinearly (antialiased, like the Rust side's triangle filter) to 128x256, RGB,
/255, ImageNet mean/std; labels nearest-resized to 128x256 for the loss only.

Evaluation follows Cityscapes: one 19x19 confusion matrix over the whole val
split, logits upsampled bilinearly (align_corners False) to the full label size
(256x512), argmax; IoU = TP / (TP + FP + FN). Two means are written:
``miou_present`` over the classes that occur in the val ground truth (what
cityscapesScripts does: a class without ground truth is NaN and left out) and
``miou_19`` = (sum of those IoUs) / 19, counting absent classes as 0.

Usage, from the repository root (about 10 minutes on 2 cores)::

    python3 calibration/generate_sample.py    # only if calibration/sample is missing
    python3 models/train_sample_model.py
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "models"))
sys.path.insert(0, os.path.join(REPO, "calibration"))

import export_hrnet_ocr as exporter  # noqa: E402
import generate_sample  # noqa: E402  (its PNG reader reads the files it wrote)

IGNORE = 255
NUM_CLASSES = 19
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
             25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CLASS_NAMES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
               "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
               "bus", "train", "motorcycle", "bicycle"]

# The make_fixtures.py SMALL configuration, trained from scratch (no randomised BN).
SMALL = ["--branch-width", "8", "--num-modules", "1,1,1", "--num-blocks", "1",
         "--layer1-blocks", "1", "--ocr-mid", "32", "--ocr-key", "16", "--no-random-bn"]
INPUT_HW = (128, 256)
OUT_DIR = os.path.join("models", "sample")

LUT = np.full(256, IGNORE, np.uint8)
for _label_id, _train_id in TRAIN_IDS.items():
    LUT[_label_id] = _train_id


def list_split(root: str, split: str) -> list:
    """(image, label) paths, sorted by city then file name."""
    images = sorted(glob.glob(os.path.join(root, "leftImg8bit", split, "*", "*_leftImg8bit.png")))
    if not images:
        raise SystemExit(f"no images under {root}/leftImg8bit/{split}; run calibration/generate_sample.py")
    pairs = []
    for img in images:
        city = os.path.basename(os.path.dirname(img))
        stem = os.path.basename(img)[: -len("_leftImg8bit.png")]
        lab = os.path.join(root, "gtFine", split, city, stem + "_gtFine_labelIds.png")
        if not os.path.exists(lab):
            raise SystemExit(f"{img}: no label {lab}")
        pairs.append((img, lab))
    return pairs


def preprocess(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> [1, 3, 128, 256] HRNet-normalised float32."""
    x = torch.from_numpy(rgb).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    x = F.interpolate(x, size=INPUT_HW, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(exporter.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(exporter.IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def load_split(root: str, split: str):
    """Inputs [N,3,128,256], labels at full size [N,H,W] (trainIds) and at input size."""
    xs, full = [], []
    for img, lab in list_split(root, split):
        xs.append(preprocess(generate_sample.read_png(img)))
        full.append(torch.from_numpy(LUT[generate_sample.read_png(lab)].astype(np.int64)))
    x, y = torch.cat(xs), torch.stack(full)
    y_small = F.interpolate(y[:, None].float(), size=INPUT_HW, mode="nearest")[:, 0].long()
    return x, y, y_small


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    up = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(up, target, ignore_index=IGNORE)


@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor) -> dict:
    model.eval()
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)  # rows: ground truth, columns: prediction
    for i in range(x.shape[0]):
        out = model(x[i:i + 1])[1]
        pred = F.interpolate(out, size=y.shape[-2:], mode="bilinear", align_corners=False).argmax(1)[0]
        gt = y[i].numpy().ravel()
        keep = gt != IGNORE
        conf += np.bincount(gt[keep] * NUM_CLASSES + pred.numpy().ravel()[keep],
                            minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)
    tp = np.diag(conf).astype(np.float64)
    fp = conf.sum(0) - tp
    fn = conf.sum(1) - tp
    present = conf.sum(1) > 0
    iou = np.where(present, tp / np.maximum(tp + fp + fn, 1), np.nan)
    return {
        "miou_present": float(np.nanmean(iou)),
        "miou_19": float(np.nansum(iou) / NUM_CLASSES),
        "pixel_accuracy": float(tp.sum() / max(conf.sum(), 1)),
        "classes_present": int(present.sum()),
        "iou": {name: (None if np.isnan(v) else round(float(v), 4)) for name, v in zip(CLASS_NAMES, iou)},
    }


def train(args) -> tuple:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model_args = exporter.parse_args(SMALL + ["--seed", str(args.seed), "--exporter", "legacy",
                                              "--opset", "13", "--height", str(INPUT_HW[0]),
                                              "--width-px", str(INPUT_HW[1]),
                                              "--out", os.path.join(OUT_DIR, "model.onnx")])
    model = exporter.build_model(model_args)
    x, _, y = load_split(args.data, "train")
    n = x.shape[0]
    steps_per_epoch = n // args.batch
    total = steps_per_epoch * args.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    # HRNet's poly schedule (power 0.9), after a short warm-up for the from-scratch BatchNorms.
    warm = min(20, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else (1 - (s - warm) / max(total - warm, 1)) ** 0.9)
    step = 0
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(n)
        running = 0.0
        for b in range(steps_per_epoch):
            idx = torch.from_numpy(order[b * args.batch:(b + 1) * args.batch])
            # Random crops of the input width, as HRNet trains on crops: half the pixels per step,
            # twice the steps in the same CPU time.
            offs = rng.integers(0, INPUT_HW[1] - args.crop + 1, len(idx))
            xb = torch.stack([x[i, :, :, o:o + args.crop] for i, o in zip(idx.tolist(), offs)])
            yb = torch.stack([y[i, :, o:o + args.crop] for i, o in zip(idx.tolist(), offs)])
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            yb = torch.where(flip[:, None, None], yb.flip(-1), yb)
            aux, out = model(xb)
            loss = seg_loss(out, yb) + args.aux_weight * seg_loss(aux, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running += loss.item()
        print(f"epoch {epoch + 1}/{args.epochs}: loss {running / steps_per_epoch:.3f}, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    return model.eval(), model_args, time.perf_counter() - t0, n


def save_npy(path: str, a: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(a, dtype="<f4"), allow_pickle=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join("calibration", "sample"))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--crop", type=int, default=128, help="training crop width (input height kept)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--aux-weight", type=float, default=0.4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=2, help="the development machine is shared: keep it small")
    args = p.parse_args()
    os.chdir(REPO)
    torch.set_num_threads(args.threads)

    model, model_args, train_s, n_train = train(args)
    xv, yv, _ = load_split(args.data, "val")
    metrics = evaluate(model, xv, yv)
    print(f"val mIoU: {metrics['miou_present']:.4f} over {metrics['classes_present']} present classes, "
          f"{metrics['miou_19']:.4f} over 19; pixel accuracy {metrics['pixel_accuracy']:.4f}")

    os.makedirs(OUT_DIR, exist_ok=True)
    onnx_path = os.path.join(OUT_DIR, "model.onnx")
    exporter.export(model, xv[:1], model_args)
    golden = xv[:1].numpy()
    with torch.no_grad():
        ref = [t.numpy() for t in model(xv[:1])]
    got = exporter.ort_run(onnx_path, golden)
    errs = [exporter.rel_l2(g, r) for g, r in zip(got, ref)]
    print(f"onnxruntime vs PyTorch rel L2: aux {errs[0]:.2e}, out {errs[1]:.2e}")
    if max(errs) >= 1e-4:
        raise SystemExit("onnxruntime disagrees with PyTorch; nothing written besides model.onnx")
    save_npy(os.path.join(OUT_DIR, "input.npy"), golden)
    save_npy(os.path.join(OUT_DIR, "aux.npy"), got[0])
    save_npy(os.path.join(OUT_DIR, "out.npy"), got[1])
    golden_image = list_split(args.data, "val")[0][0]
    case = {
        "why": "A trained small HRNet-OCR, so calibration and accuracy reports measure something real.",
        "exporter": "legacy",
        "opset": 13,
        "dynamic": False,
        "head": "official",
        "input": "input",
        "input_shape": [1, 3, *INPUT_HW],
        "outputs": ["aux", "out"],
        "model_args": SMALL + ["--seed", str(args.seed)],
        "training": {
            "data": args.data, "split": "train", "images": n_train, "epochs": args.epochs,
            "batch": args.batch, "optimizer": "AdamW(weight_decay=1e-4)", "lr": args.lr,
            "schedule": "linear warm-up then poly 0.9", "aux_weight": args.aux_weight,
            "loss": "cross-entropy, ignore 255, logits upsampled bilinearly to 128x256 labels",
            "augmentation": f"random {INPUT_HW[0]}x{args.crop} crop, horizontal flip",
            "seed": args.seed, "threads": args.threads,
            "seconds": round(train_s, 1), "torch": torch.__version__,
        },
        "golden_image": os.path.relpath(golden_image, REPO),
        "val": {"split": "val", "images": int(xv.shape[0]),
                "protocol": "one confusion matrix over the split; logits upsampled bilinearly "
                            "(align_corners false) to the 256x512 label, argmax; IoU = TP/(TP+FP+FN); "
                            "miou_present: mean over classes in the val ground truth; "
                            "miou_19: the same sum divided by 19",
                **metrics},
    }
    with open(os.path.join(OUT_DIR, "case.json"), "w") as f:
        json.dump(case, f, indent=2)
        f.write("\n")
    print(f"wrote {OUT_DIR}: model.onnx {os.path.getsize(onnx_path)} bytes")


if __name__ == "__main__":
    main()
