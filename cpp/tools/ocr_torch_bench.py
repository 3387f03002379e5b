"""The two OCR ops unfused, as the official HRNet-OCR code computes them (view/permute/matmul/softmax), timed
with CUDA events at the same sizes as ocr_kernel_bench.cu, so the fused kernels have their peer in the same run.
Run by scripts/gpu-check.sh when torch imports; prints a table, or a line saying why it skipped."""

import sys


def main() -> int:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("ocr_torch_bench: torch not importable; skipped")
        return 0
    if not torch.cuda.is_available():
        print("ocr_torch_bench: torch sees no CUDA device; skipped")
        return 0

    def gather(probs, feats, scale=1.0):
        # SpatialGather_Module.forward
        b, c = probs.size(0), probs.size(1)
        probs = probs.view(b, c, -1)
        feats = feats.view(b, feats.size(1), -1).permute(0, 2, 1)
        probs = F.softmax(scale * probs, dim=2)
        return torch.matmul(probs, feats).permute(0, 2, 1).unsqueeze(3)

    def attention(query, key, value, scale):
        # _ObjectAttentionBlock.forward after f_pixel / f_object / f_down
        b, ck, h, w = query.shape
        q = query.view(b, ck, -1).permute(0, 2, 1)
        k = key.view(b, ck, -1)
        v = value.view(b, ck, -1).permute(0, 2, 1)
        sim = F.softmax(torch.matmul(q, k) * scale, dim=-1)
        ctx = torch.matmul(sim, v).permute(0, 2, 1).contiguous()
        return ctx.view(b, ck, h, w)

    def median_ms(fn, runs=50):
        for _ in range(5):
            fn()
        times = []
        for _ in range(runs):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        return sorted(times)[runs // 2]

    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()} (unfused; TF32 matmul off)")
    torch.backends.cuda.matmul.allow_tf32 = False
    for h, w in [(128, 256), (256, 512)]:
        for dtype in [torch.float32, torch.float16]:
            name = "f32" if dtype == torch.float32 else "f16"
            probs = torch.randn(1, 19, h, w, device="cuda", dtype=dtype)
            feats = torch.randn(1, 512, h, w, device="cuda", dtype=dtype)
            ms = median_ms(lambda: gather(probs, feats))
            print(f"{'OcrSpatialGather':<18} {name:<4} {h:4d}x{w:<4d} {ms * 1e3:9.1f} us (torch)")
            q = torch.randn(1, 256, h, w, device="cuda", dtype=dtype)
            k = torch.randn(1, 256, 19, 1, device="cuda", dtype=dtype)
            v = torch.randn(1, 256, 19, 1, device="cuda", dtype=dtype)
            ms = median_ms(lambda: attention(q, k, v, 256**-0.5))
            print(f"{'OcrObjectAttention':<18} {name:<4} {h:4d}x{w:<4d} {ms * 1e3:9.1f} us (torch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
