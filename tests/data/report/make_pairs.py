#!/usr/bin/env python3
"""Writes the committed prediction/label pairs of tests/report.rs: two 4x6 scenes with a Cityscapes
labelIds map (as gtFine ships it) and a trainId prediction each. Standard library only.

labelIds used: 0 unlabeled (-> ignore 255), 7 road (trainId 0), 8 sidewalk (1), 11 building (2),
26 car (13). The per-class IoUs these give are worked out by hand in tests/report.rs.
"""
import struct
import zlib
from pathlib import Path

PAIRS = {
    "a": (
        [[7, 7, 7, 8, 8, 8],
         [7, 7, 7, 8, 8, 8],
         [11, 11, 11, 11, 26, 26],
         [11, 11, 0, 0, 26, 26]],
        [[0, 0, 1, 1, 1, 1],
         [0, 0, 0, 1, 1, 2],
         [2, 2, 2, 13, 13, 13],
         [2, 2, 0, 13, 13, 13]],
    ),
    "b": (
        [[7, 7, 7, 7, 7, 7],
         [8, 8, 8, 8, 8, 8],
         [26, 26, 26, 11, 11, 11],
         [26, 26, 26, 11, 11, 11]],
        [[0, 0, 0, 0, 0, 1],
         [1, 1, 1, 1, 0, 0],
         [13, 13, 2, 2, 2, 2],
         [13, 13, 13, 2, 2, 2]],
    ),
}


def gray_png(rows):
    h, w = len(rows), len(rows[0])
    raw = b"".join(b"\x00" + bytes(r) for r in rows)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


here = Path(__file__).parent
for name, (label, pred) in PAIRS.items():
    (here / f"{name}_gtFine_labelIds.png").write_bytes(gray_png(label))
    (here / f"{name}_pred_trainIds.png").write_bytes(gray_png(pred))
