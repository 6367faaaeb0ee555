"""The reference side of bench_causal.py: explain planted-evidence images with rex-xai 0.4.1 (run in its venv).

    python _causal_rex_worker.py WORK_DIR ITERATIONS THREADS SEED ARCH

Reads WORK_DIR/model.pt (weights of ``_models.build(ARCH)``) and WORK_DIR/images.pt ((N, 1, S, S) images),
explains each image with ReX's API (its pytorch prediction function, default settings except the number of
iterations, the seed and no GPU),
timing landscape + extraction + metrics as a user of its `analyze` would, and prints ``RESULT {json}``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import torch
from _models import build

logging.disable(logging.WARNING)


def main() -> None:
    from rex_xai.explanation.explanation import Explanation
    from rex_xai.explanation.rex import analyze, calculate_responsibility, predict_target
    from rex_xai.input.config import CausalArgs
    from rex_xai.input.input_data import Data
    from rex_xai.responsibility.prediction import from_pytorch_tensor

    work, iterations, threads, seed, arch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \
        sys.argv[5]
    torch.set_num_threads(threads)
    model = build(arch)
    model.load_state_dict(torch.load(work / "model.pt", weights_only=True))
    model.eval()
    images = torch.load(work / "images.pt", weights_only=True)
    passes = [0]

    def prediction_function(mutants, target=None, raw=False, binary_threshold=None):
        passes[0] += len(mutants)
        with torch.no_grad():
            logits = model(mutants)
            if raw:
                return torch.softmax(logits, dim=1)
            return from_pytorch_tensor(logits, target=target)

    results = []
    size = images.shape[-1]
    for image in images:
        args = CausalArgs()
        args.iters = iterations
        args.gpu = False
        args.progress_bar = False
        args.seed = seed
        args.analyse = True
        data = Data(None, ["N", 1, size, size], "cpu", mode="RGB", process=False)
        data.data = image[None].clone()
        data.model_height = data.model_width = size
        data.model_channels = 1
        data.model_order = "first"
        data.transposed = True
        data.set_mask_value(0)
        passes[0] = 0
        start = time.perf_counter()
        data.target = predict_target(data, args, prediction_function)
        maps, stats = calculate_responsibility(data, args, prediction_function)
        landscape_passes = passes[0]
        explanation = Explanation(maps, prediction_function, data, args, stats)
        explanation.extract()
        metrics = analyze(explanation, data.mode)
        seconds = time.perf_counter() - start
        responsibility = maps.get(data.target.classification)
        responsibility = torch.as_tensor(responsibility).reshape(-1, size, size)[0]
        mask = torch.as_tensor(explanation.sufficiency_mask).reshape(-1, size, size)[0].bool()
        peak = int(torch.argmax(responsibility))
        results.append({
            "seconds": seconds, "landscape_passes": landscape_passes, "passes": passes[0],
            "peak": [peak // size, peak % size], "mask": mask.nonzero().tolist(), "map": responsibility.tolist(),
            "target": int(data.target.classification), "insertion": metrics["insertion_curve"],
            "deletion": metrics["deletion_curve"],
        })
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
