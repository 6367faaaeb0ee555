"""Time one implementation's ``compute_feature_score_table`` on a list of images (run inside its own venv).

    python _features_worker.py PATHS_FILE REPEATS

Prints ``RESULT {json}`` with the best wall time over the repeats and the table's values.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from tell_me_why.feature_scores import compute_feature_score_table

ORIGINAL_SCORES = [
    "brightness", "variance", "skewness", "color_covariance_red_blue", "redness_dominance", "symmetry_error",
    "top_bottom_brightness_ratio", "center_texture", "eye_region_contrast", "jaw_texture", "fft_high_frequency_ratio",
]


def main() -> None:
    paths = open(sys.argv[1]).read().split("\n")
    repeats = int(sys.argv[2])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        table = compute_feature_score_table(paths, score_names=ORIGINAL_SCORES, on_error="raise")
        times.append(time.perf_counter() - start)
    result = {
        "seconds": min(times),
        "all_seconds": times,
        "torch_threads": torch.get_num_threads(),
        "values": {name: table[name].tolist() for name in ORIGINAL_SCORES},
        "paths": table["Source_File_Path"].tolist(),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
