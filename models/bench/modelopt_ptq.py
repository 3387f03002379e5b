"""The peer of `ocrnet-edge bench calib`: NVIDIA TensorRT Model Optimizer's ONNX PTQ (INT8, onnxruntime on the
CPU) on the same model file and the same preprocessed images, so both calibrations are timed alike.

    python modelopt_ptq.py MODEL.onnx INPUTS.npy OUT.onnx METHOD

INPUTS.npy is [N, 3, H, W] float32 (what `bench calib` wrote); METHOD is `entropy` or `max`. Prints one JSON
line: the wall time of `quantize` (calibration, Q/DQ placement and saving; imports excluded) and the images.
"""

import json
import sys
import time

import numpy as np
import onnx


def main() -> None:
    model, inputs, out, method = sys.argv[1:5]
    x = np.load(inputs)
    name = onnx.load(model, load_external_data=False).graph.input[0].name
    import modelopt.onnx.quantization as moq

    start = time.perf_counter()
    moq.quantize(
        onnx_path=model,
        quantize_mode="int8",
        calibration_data={name: x},
        calibration_method=method,
        calibration_eps=["cpu"],
        output_path=out,
        log_level="WARNING",
    )
    print(json.dumps({"seconds": time.perf_counter() - start, "images": int(x.shape[0])}))


if __name__ == "__main__":
    main()
