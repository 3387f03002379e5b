#!/usr/bin/env python3
"""Generate the committed Cityscapes-layout sample set: procedural street scenes.

Deterministic (one seed per image, derived from the split, city and frame), with
numpy and zlib only, so regenerating needs no imaging library. From the
repository root::

    python3 calibration/generate_sample.py            # rewrites calibration/sample/

Layout written (the official Cityscapes one)::

    sample/leftImg8bit/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png   RGB8
    sample/gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelIds.png    8-bit labelIds

Scenes are a perspective road towards a vanishing point with sidewalks,
terrain, buildings, walls, fences, vegetation, sky, and objects scaled by depth
(cars, trucks, buses, trams, people, riders on bicycles/motorcycles, poles with
traffic lights and signs), plus an ego-vehicle hood and some labels Cityscapes
does not evaluate (static, unlabeled) that map to ignore 255. Each city has
its own palette (sky tint, facade colours, asphalt tone), and every region has
texture, so a model must use shape and context, not one colour per class.

Textures are block noise (constant over 2x2 or larger blocks) rather than
per-pixel noise: deflate compresses repeated bytes, which keeps the committed
set at a few MB.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
import zlib

import numpy as np

H, W = 256, 512
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample")
BASE_SEED = 20261202

# split -> [(city, number of images)]
SPLITS = {
    "train": [("aachen", 40), ("bremen", 40), ("zurich", 40)],
    "val": [("frankfurt", 15), ("munster", 15)],
}

# Cityscapes labelIds used here.
UNLABELED, EGO, OUT_OF_ROI, STATIC = 0, 1, 3, 4
ROAD, SIDEWALK, BUILDING, WALL, FENCE = 7, 8, 11, 12, 13
POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = 17, 19, 20, 21, 22, 23
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = 24, 25, 26, 27, 28, 31, 32, 33

# Per-city palettes: (sky top, sky horizon, facade colours, asphalt, sidewalk, vegetation).
CITY_STYLE = {
    "aachen": ((70, 120, 190), (190, 210, 230), [(150, 120, 100), (170, 150, 120), (120, 90, 80)],
               (80, 80, 85), (150, 140, 135), (60, 110, 50)),
    "bremen": ((110, 130, 160), (200, 200, 205), [(130, 60, 50), (160, 80, 60), (110, 100, 95)],
               (70, 72, 78), (160, 150, 140), (50, 100, 60)),
    "zurich": ((50, 110, 200), (170, 205, 240), [(200, 195, 180), (180, 170, 150), (140, 150, 160)],
               (90, 90, 92), (175, 170, 165), (70, 125, 45)),
    "frankfurt": ((80, 125, 180), (185, 205, 225), [(160, 160, 165), (140, 120, 110), (190, 170, 140)],
                  (78, 78, 82), (155, 150, 145), (55, 115, 55)),
    "munster": ((90, 120, 170), (195, 205, 220), [(150, 90, 70), (175, 150, 125), (125, 115, 110)],
                (75, 76, 80), (150, 145, 140), (60, 105, 50)),
}


# --------------------------------------------------------------------------
# PNG without an imaging library (filters None/Sub/Up, which a reader can undo
# with vectorised numpy).
# --------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(a: np.ndarray) -> bytes:
    """8-bit grayscale (H,W) or RGB (H,W,3); per row the filter with the smallest sum of |residual|."""
    a = np.ascontiguousarray(a, dtype=np.uint8)
    h, w = a.shape[:2]
    ch = 1 if a.ndim == 2 else a.shape[2]
    rows = a.reshape(h, w * ch).astype(np.int16)
    up = np.vstack([np.zeros((1, w * ch), np.int16), rows[:-1]])
    left = np.hstack([np.zeros((h, ch), np.int16), rows[:, :-ch]])
    cands = np.stack([rows, rows - left, rows - up]) % 256  # None, Sub, Up
    cost = np.minimum(cands, 256 - cands).sum(axis=2)
    best = cost.argmin(axis=0)
    body = np.empty((h, w * ch + 1), np.uint8)
    body[:, 0] = best
    body[:, 1:] = cands[best, np.arange(h)]
    colour = 0 if ch == 1 else 2
    ihdr = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(body.tobytes(), 9)) + _chunk(b"IEND", b""))


def read_png(path: str) -> np.ndarray:
    """Reads the PNGs this script writes (8-bit gray/RGB, filters 0-2); anything else is refused."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    w, h, depth, colour, _, _, interlace = hdr
    if depth != 8 or colour not in (0, 2) or interlace:
        raise ValueError(f"{path}: only 8-bit gray/RGB non-interlaced PNGs are supported")
    ch = 1 if colour == 0 else 3
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, w * ch + 1)
    out = np.empty((h, w * ch), np.uint8)
    prev = np.zeros(w * ch, np.uint8)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:]
        if f == 0:
            cur = line
        elif f == 1:
            cur = (np.cumsum(line.reshape(w, ch).astype(np.int64), axis=0) % 256).astype(np.uint8).ravel()
        elif f == 2:
            cur = line + prev
        else:
            raise ValueError(f"{path}: PNG filter {f} not supported by this reader")
        out[y] = cur
        prev = out[y]
    return out.reshape(h, w) if ch == 1 else out.reshape(h, w, 3)


# --------------------------------------------------------------------------
# Drawing.
# --------------------------------------------------------------------------

YY, XX = np.mgrid[0:H, 0:W].astype(np.float32)


class Canvas:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.img = np.zeros((H, W, 3), np.float32)
        self.lab = np.zeros((H, W), np.uint8)

    def block_noise(self, block: int, amp: float) -> np.ndarray:
        """Noise constant over block x block cells (compresses well, still texture)."""
        block = max(block, 4)
        g = self.rng.normal(0.0, amp, (H // block + 1, W // block + 1))
        g = (np.round(g / 3) * 3).astype(np.float32)  # fewer distinct residuals: better deflate
        return np.repeat(np.repeat(g, block, 0), block, 1)[:H, :W]

    def paint(self, mask: np.ndarray, label: int, colour, noise: np.ndarray | None = None,
              shade: np.ndarray | None = None) -> None:
        c = np.asarray(colour, np.float32)
        px = np.broadcast_to(c, (H, W, 3)).copy()
        if shade is not None:
            px *= shade[..., None]
        if noise is not None:
            px += noise[..., None]
        self.img[mask] = px[mask]
        self.lab[mask] = label


def jitter(rng, colour, amount=18):
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0, amount, 3), 0, 255)


def rect(x0, y0, x1, y1):
    return (XX >= x0) & (XX < x1) & (YY >= y0) & (YY < y1)


def ellipse(cx, cy, rx, ry):
    return ((XX - cx) / max(rx, 0.5)) ** 2 + ((YY - cy) / max(ry, 0.5)) ** 2 <= 1.0


def between_lines(x_at_y_left, x_at_y_right):
    return (XX >= x_at_y_left) & (XX < x_at_y_right)


# --------------------------------------------------------------------------
# Scene.
# --------------------------------------------------------------------------


def scene(city: str, rng: np.random.Generator):
    sky_top, sky_hor, facades, asphalt, walk, veg = CITY_STYLE[city]
    cv = Canvas(rng)
    hy = rng.uniform(0.36, 0.5) * H  # horizon
    vx = rng.uniform(0.35, 0.65) * W  # vanishing point
    road_half = rng.uniform(0.35, 0.55) * W  # half road width at the bottom row
    walk_w = rng.uniform(0.18, 0.3) * W

    def road_edge(side: float, extra: float = 0.0) -> np.ndarray:
        # x of a line through the vanishing point, `side` * (half width + extra) at the bottom row.
        t = np.clip((YY - hy) / (H - hy), 0, None)
        return vx + side * (road_half + extra) * t

    # Sky: vertical gradient, block-noise clouds.
    t = np.clip(YY / max(hy, 1), 0, 1)[..., None]
    cv.img[:] = (1 - t) * np.asarray(jitter(rng, sky_top, 10)) + t * np.asarray(jitter(rng, sky_hor, 10))
    cv.img += np.maximum(cv.block_noise(16, 25), 0)[..., None]
    cv.lab[:] = SKY

    # Buildings: facades along both sides, windows as a regular grid.
    for side in (-1, 1):
        x = vx + side * rng.uniform(0, 20)
        while (side < 0 and x > 0) or (side > 0 and x < W):
            bw = rng.uniform(30, 110)
            top = rng.uniform(0.02, 0.8) * hy
            x0, x1 = (x - bw, x) if side < 0 else (x, x + bw)
            m = rect(x0, top, x1, hy + 6)
            cv.paint(m, BUILDING, jitter(rng, facades[rng.integers(len(facades))], 20),
                     cv.block_noise(2, 6))
            win = jitter(rng, (50, 60, 75), 15)
            sx, sy = rng.uniform(8, 16), rng.uniform(10, 18)
            wm = m & ((XX - x0) % sx < sx * 0.5) & ((YY - top) % sy < sy * 0.55) & (YY < hy - 4)
            cv.paint(wm, BUILDING, win, cv.block_noise(2, 5))
            x += side * bw

    # Vegetation: tree crowns as clusters of ellipses, sometimes a hedge.
    for _ in range(rng.integers(1, 5)):
        cx, cy, r = rng.uniform(0, W), rng.uniform(0.3, 1.0) * hy, rng.uniform(15, 45)
        m = np.zeros((H, W), bool)
        for _ in range(6):
            m |= ellipse(cx + rng.normal(0, r / 2), cy + rng.normal(0, r / 3), r * rng.uniform(0.5, 1),
                         r * rng.uniform(0.4, 0.8))
        cv.paint(m, VEGETATION, jitter(rng, veg, 15), cv.block_noise(3, 22))
        cv.paint(rect(cx - r / 10, cy, cx + r / 10, hy + 10), VEGETATION, (80, 60, 40), cv.block_noise(2, 8))

    # Ground below the horizon: terrain strips, sidewalks, road.
    ground = YY >= hy
    cv.paint(ground, TERRAIN, jitter(rng, (110, 120, 70), 15), cv.block_noise(2, 14))
    walk_m = ground & between_lines(road_edge(-1, walk_w), road_edge(1, walk_w))
    for side in (-1, 1):
        # A wall or a fence sometimes separates the terrain from the buildings.
        kind = rng.choice([0, WALL, FENCE])
        if kind:
            # A low band in front of the facades, from some distance beside the road outwards.
            xb = vx + side * rng.uniform(40, 160)
            hgt = rng.uniform(6, 16)
            m = ((XX - xb) * side > 0) & (YY >= hy - hgt - 0.04 * np.abs(XX - vx)) & (YY < hy + 3 + 0.05 * np.abs(XX - vx))
            if kind == WALL:
                cv.paint(m, WALL, jitter(rng, (160, 155, 145), 20), cv.block_noise(2, 8))
            else:
                bars = m & ((XX.astype(np.int32) // 3) % 2 == 0)
                cv.paint(bars, FENCE, jitter(rng, (120, 120, 110), 20), cv.block_noise(2, 5))
    cv.paint(walk_m, SIDEWALK, jitter(rng, walk, 12), cv.block_noise(2, 7))
    tiles = walk_m & (((XX.astype(np.int32) // 10) + (YY.astype(np.int32) // 6)) % 2 == 0)
    cv.paint(tiles, SIDEWALK, jitter(rng, walk, 12) * 0.92)
    road_m = ground & between_lines(road_edge(-1), road_edge(1))
    cv.paint(road_m, ROAD, jitter(rng, asphalt, 8), cv.block_noise(2, 6))
    lane = road_m & (np.abs(XX - vx) < 1 + (YY - hy) * 0.02) & ((np.maximum(YY - hy, 0) ** 0.5 * 3).astype(np.int32) % 2 == 0)
    cv.paint(lane, ROAD, (215, 215, 205), cv.block_noise(2, 5))

    # Objects, far to near (painter's order).
    objs = []
    for _ in range(rng.integers(3, 9)):
        objs.append(("vehicle", rng.uniform(hy + 8, H - 10), rng.uniform(-0.9, 0.9)))
    for _ in range(rng.integers(2, 7)):
        objs.append(("person", rng.uniform(hy + 6, H - 20), rng.choice([-1, 1]) * rng.uniform(1.05, 1.3)))
    for _ in range(rng.integers(0, 3)):
        objs.append(("cyclist", rng.uniform(hy + 8, H - 15), rng.uniform(-0.9, 0.9)))
    for _ in range(rng.integers(1, 4)):
        objs.append(("pole", rng.uniform(hy + 10, H - 5), rng.choice([-1, 1]) * rng.uniform(1.02, 1.15)))
    if rng.random() < 0.3:
        objs.append(("static", rng.uniform(hy + 8, H - 20), rng.choice([-1, 1]) * rng.uniform(1.1, 1.4)))
    for kind, y, u in sorted(objs, key=lambda o: o[1]):
        s = (y - hy) / (H - hy)  # depth scale: 0 at the horizon, 1 at the bottom row
        x = vx + u * road_half * s
        draw_object(cv, rng, kind, x, y, s)

    # Ego-vehicle hood and unlabeled border.
    if rng.random() < 0.7:
        hood = (YY > H - rng.uniform(8, 22) - 10 * np.exp(-((XX - W / 2) / (W / 3)) ** 2))
        cv.paint(hood, EGO, jitter(rng, (30, 30, 35), 10), cv.block_noise(4, 4))
    if rng.random() < 0.3:
        cv.paint(XX < rng.integers(2, 6), UNLABELED, (0, 0, 0))

    img = np.clip(cv.img * rng.uniform(0.8, 1.15), 0, 255).astype(np.uint8)  # exposure
    return img, cv.lab


def draw_object(cv: Canvas, rng, kind: str, x: float, y: float, s: float) -> None:
    if kind == "vehicle":
        cls = rng.choice([CAR] * 10 + [TRUCK] * 2 + [BUS] * 2 + [TRAIN])
        w, h = {CAR: (90, 45), TRUCK: (110, 90), BUS: (130, 95), TRAIN: (170, 100)}[cls]
        w, h = w * s * rng.uniform(0.85, 1.15), h * s * rng.uniform(0.9, 1.1)
        if w < 3:
            return
        body = rect(x - w / 2, y - h, x + w / 2, y - 0.12 * h)
        colour = rng.uniform(20, 235, 3) if cls == CAR else jitter(rng, {TRUCK: (200, 200, 195), BUS: (
            220, 180, 40), TRAIN: (200, 40, 40)}[cls], 25)
        if cls == CAR:  # the cabin is narrower than the body
            body = rect(x - w / 2, y - 0.55 * h, x + w / 2, y - 0.12 * h) | rect(
                x - 0.35 * w, y - h, x + 0.35 * w, y - 0.5 * h)
        cv.paint(body, cls, colour, cv.block_noise(2, 6))
        glass = rect(x - 0.3 * w, y - 0.92 * h, x + 0.3 * w, y - 0.62 * h)
        cv.paint(glass, cls, (40, 50, 60), cv.block_noise(2, 6))
        for wx in (x - 0.32 * w, x + 0.32 * w):
            cv.paint(ellipse(wx, y - 0.12 * h, 0.12 * w, 0.12 * h), cls, (20, 20, 20))
    elif kind == "person":
        h = 70 * s * rng.uniform(0.85, 1.15)
        if h < 4:
            return
        cv.paint(rect(x - 0.13 * h, y - 0.8 * h, x + 0.13 * h, y - 0.42 * h), PERSON, rng.uniform(20, 230, 3),
                 cv.block_noise(2, 8))
        cv.paint(rect(x - 0.1 * h, y - 0.42 * h, x - 0.01 * h, y) | rect(x + 0.01 * h, y - 0.42 * h, x + 0.1 * h, y),
                 PERSON, jitter(rng, (50, 50, 70), 20))
        cv.paint(ellipse(x, y - 0.88 * h, 0.08 * h, 0.1 * h), PERSON, jitter(rng, (200, 160, 130), 25))
    elif kind == "cyclist":
        cls = BICYCLE if rng.random() < 0.6 else MOTORCYCLE
        h = 70 * s * rng.uniform(0.9, 1.1)
        if h < 4:
            return
        r = 0.2 * h
        wheels = np.zeros((H, W), bool)
        for wx in (x - 0.3 * h, x + 0.3 * h):
            ring = ellipse(wx, y - r, r, r)
            wheels |= ring & ~ellipse(wx, y - r, r * (0.7 if cls == BICYCLE else 0.4), r * (0.7 if cls == BICYCLE else 0.4))
        frame = rect(x - 0.3 * h, y - 1.6 * r, x + 0.3 * h, y - 1.2 * r)
        if cls == MOTORCYCLE:
            frame |= rect(x - 0.25 * h, y - 2.2 * r, x + 0.2 * h, y - 1.1 * r)
        cv.paint(wheels | frame, cls, jitter(rng, (40, 40, 45) if cls == MOTORCYCLE else (150, 30, 30), 30))
        cv.paint(rect(x - 0.1 * h, y - 1.05 * h, x + 0.1 * h, y - 1.6 * r) | ellipse(x, y - 1.12 * h, 0.08 * h,
                 0.1 * h), RIDER, rng.uniform(20, 230, 3), cv.block_noise(2, 8))
    elif kind == "pole":
        h = 200 * s * rng.uniform(0.8, 1.2)
        pw = max(1.0, 3 * s)
        if h < 6:
            return
        cv.paint(rect(x - pw / 2, y - h, x + pw / 2, y), POLE, jitter(rng, (110, 110, 115), 20))
        r = rng.random()
        if r < 0.45:
            lw, lh = 6 * s + 1.5, 16 * s + 3
            cv.paint(rect(x - lw / 2, y - h, x + lw / 2, y - h + lh), LIGHT, jitter(rng, (30, 30, 30), 8))
            lamp = rng.integers(3)
            cy = y - h + lh * (0.2 + 0.3 * lamp)
            cv.paint(ellipse(x, cy, lw * 0.3, lh * 0.1), LIGHT, [(230, 40, 30), (240, 180, 30), (40, 220, 90)][lamp])
        elif r < 0.9:
            sr = 7 * s + 1.5
            colour = [(200, 30, 30), (30, 80, 190), (230, 200, 30)][rng.integers(3)]
            m = ellipse(x, y - h + sr, sr, sr) if rng.random() < 0.5 else rect(x - sr, y - h, x + sr, y - h + 1.6 * sr)
            cv.paint(m, SIGN, jitter(rng, colour, 15))
            cv.paint(m & ellipse(x, y - h + sr, sr * 0.6, sr * 0.6), SIGN, (235, 235, 235))
    elif kind == "static":
        w = 25 * s
        cv.paint(rect(x - w / 2, y - 1.2 * w, x + w / 2, y), STATIC, rng.uniform(30, 200, 3), cv.block_noise(2, 6))


def write(path: str, array: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(encode_png(array))


def main() -> None:
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    counts = {}
    for split_idx, (split, cities) in enumerate(SPLITS.items()):
        for city_idx, (city, n) in enumerate(cities):
            for frame in range(n):
                seq = city_idx  # one drive per city
                rng = np.random.default_rng([BASE_SEED, split_idx, city_idx, frame])
                img, lab = scene(city, rng)
                stem = f"{city}_{seq:06d}_{frame * 19:06d}"
                write(os.path.join(ROOT, "leftImg8bit", split, city, stem + "_leftImg8bit.png"), img)
                write(os.path.join(ROOT, "gtFine", split, city, stem + "_gtFine_labelIds.png"), lab)
            counts[f"{split}/{city}"] = n
    print("wrote", ROOT, counts, file=sys.stderr)


if __name__ == "__main__":
    main()
