"""The papers' published numbers for the rows this project reproduces, to print beside ours.

Their datasets differ from the MNIST of the main job (CIFAR-10 is the closest small-image
column of papers/000; papers/002 reports MNIST itself), so they are a reference for the
ranking, not for the values. Keys are this project's method names.
"""

from __future__ import annotations

__all__ = ["ABLATION_DETECTION_C10", "ABLATION_FAITHFULNESS_C100", "BLUR_TEST_MNIST",
           "CONVERGENCE", "DETECTION_C10", "FAITHFULNESS_C10", "MITIGATION_MNIST", "SECONDS_C10",
           "SENSITIVITY_C10", "beside"]

# papers/000 Table 1 (C10 column: IoU, ADA); "optimization (slic)" stands for "Ours" with
# SAM segments, "kernelshap-fixed (slic)" for KernelSHAP + SAM; "optimization (pixels)" is
# papers/001 Table 6, "Ours (Pixel-based)".
DETECTION_C10 = {
    "grad": (0.109, 0.054), "smoothgrad": (0.297, 0.226), "integrated gradients": (0.208, 0.152),
    "ua-backprop": (0.271, 0.178), "kernelshap-fixed": (0.324, 0.306),
    "kernelshap-fixed (slic)": (0.676, 0.670), "lime": (0.281, 0.258), "occlusion": (0.218, 0.160),
    "optimization (slic)": (0.713, 0.700), "optimization (pixels)": (0.380, 0.365),
}

# papers/000 Table 2, C10 column: URR of gradient refinement at 0.5% and 1%, and of
# blurring at 2% and 5% (LIME and "Ours" in their pixel versions, papers/001 A.3).
FAITHFULNESS_C10 = {
    "grad": (0.662, 0.885, 0.343, 0.440), "smoothgrad": (0.623, 0.863, 0.331, 0.418),
    "integrated gradients": (0.621, 0.865, 0.392, 0.481),
    "ua-backprop": (0.706, 0.903, 0.374, 0.453), "kernelshap-fixed": (0.731, 0.904, 0.823, 0.902),
    "lime (pixels)": (0.787, 0.927, 0.378, 0.355), "occlusion": (0.822, 0.940, 0.730, 0.786),
    "optimization (pixels)": (0.825, 0.924, 0.860, 0.918),
}

# papers/002 Table 1, MNIST column, epistemic uncertainty: MURR 2%, MURR 5%, AUC-URR 2%,
# AUC-URR 5% (medians); "ua-backprop" is the paper's "Ours".
BLUR_TEST_MNIST = {
    "ua-backprop": (0.648, 0.850, 0.667, 0.445), "grad": (0.506, 0.741, 0.709, 0.534),
    "smoothgrad": (0.601, 0.779, 0.675, 0.461), "fullgrad": (0.691, 0.869, 0.603, 0.429),
    "integrated gradients": (0.434, 0.725, 0.752, 0.529),
    "blur ig": (0.305, 0.515, 0.816, 0.667),
    "clue": (0.614, 0.874, 0.709, 0.397), "delta-clue": (0.625, 0.901, 0.665, 0.395),
}

# papers/002 Table 2, MNIST column: ACC (%) and NLL of a network trained on 500 images with
# each method's attention in the latent space, mean over 5 runs; "ua-backprop" is "Ours".
MITIGATION_MNIST = {
    "ua-backprop": (91.95, 0.287), "grad": (91.35, 0.302), "smoothgrad": (90.68, 0.324),
    "fullgrad": (91.39, 0.300), "integrated gradients": (91.98, 0.350),
    "blur ig": (91.57, 0.288), "clue": (91.64, 0.348), "delta-clue": (91.76, 0.350),
    "no attention": (90.78, 0.358),
}

# papers/000 Table 3, C10 (IoU, ADA), by the ablation's row names; the paper's segments
# are SAM's where ours are slic's.
ABLATION_DETECTION_C10 = {
    "Eq. (3) per pixel": (0.333, 0.294), "Eq. (3) + segments": (0.648, 0.638),
    "Eq. (3) + segments + LP": (0.675, 0.664),
    "Eq. (3) + segments + LP + Gumbel": (0.713, 0.700),
}

# papers/001 Table 7, C100: gradient refinement 0.5%, 1%, blurring 2%, 5% (pixel level).
ABLATION_FAITHFULNESS_C100 = {
    "Eq. (3) per pixel": (0.742, 0.791, 0.355, 0.434), "+ LP": (0.756, 0.799, 0.364, 0.458),
    "+ LP + Gumbel": (0.766, 0.808, 0.386, 0.487),
}

# papers/000 Table 4, C10 (IoU, ADA), with SAM segments.
SENSITIVITY_C10 = {
    "λ = 3, τ = 0.1": (0.713, 0.700), "λ = 3, τ = 0.07": (0.679, 0.686),
    "λ = 3, τ = 0.15": (0.688, 0.682), "λ = 2.5, τ = 0.1": (0.677, 0.680),
    "λ = 2, τ = 0.1": (0.682, 0.680),
}

# papers/001 Table 9 (mean steps to the early stop without the Gumbel-sigmoid, C10 / C100 /
# SVHN; "slic" stands for the paper's SAM segments) and C.4's steps of the full method
# with SAM segments (C10 / C100 / SVHN).
CONVERGENCE = {
    ("pixels", "without Gumbel"): (194.3, 180.4, 141.0),
    ("slic", "without Gumbel"): (76.0, 77.4, 76.8),
    ("slic", "full method"): (72.0, 94.0, 84.0),
}

# papers/000 Table 5, C10 column: seconds to attribute one 32×32 image on the paper's GPU.
SECONDS_C10 = {
    "grad": 0.02, "smoothgrad": 2.10, "integrated gradients": 2.14, "ua-backprop": 0.26,
    "kernelshap-fixed": 1.63, "kernelshap-fixed (slic)": 1.08, "lime": 1.16, "occlusion": 0.15,
    "optimization (slic)": 1.54,
}


def beside(rows: list[dict], paper: dict[str, tuple], columns: tuple[str, ...]) -> list[dict]:
    """``rows`` with the paper's values added as ``"<column> (paper)"`` (None where the
    paper has no such row)."""
    out = []
    for row in rows:
        values = paper.get(row["method"])
        extra = {f"{c} (paper)": (values[i] if values else None) for i, c in enumerate(columns)}
        out.append({**row, **extra})
    return out
