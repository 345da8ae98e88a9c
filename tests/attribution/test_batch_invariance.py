"""Every method of the detection table gives an image the same map whether it is explained
alone, in a batch of 2 or in a batch of 5 (random methods: with the same per-image draws),
on every kind of posterior (sampled ones with frozen noise)."""

import inspect

import pytest
import torch

from tests._models import tiny_posteriors, tiny_vae
from uattr.experiments.registry import detection_methods
from uattr.experiments.settings import MethodSettings

X = torch.rand(5, 1, 12, 12, generator=torch.Generator().manual_seed(4))
SETTINGS = MethodSettings(n_segments=8)
POSTERIORS = tiny_posteriors(classes=4, samples=4, seed=3)
METHODS = {(kind, name): spec for kind, posterior in POSTERIORS.items()
           for name, spec in detection_methods(posterior, SETTINGS, tiny_vae()).items()}


def explain(spec, indices):
    x = X[indices]
    kwargs = {"segments": spec.segmenter(x) if spec.segmenter is not None else None}
    if "generator" in inspect.signature(spec.method.attribute).parameters:
        kwargs["generator"] = [torch.Generator().manual_seed(100 + i) for i in indices]
    return spec.method.attribute(x, **kwargs).detach()


@pytest.mark.parametrize("key", list(METHODS), ids=" / ".join)
def test_the_map_does_not_depend_on_the_batch(key):
    spec = METHODS[key]
    if hasattr(spec.method, "progress"):
        spec.method.progress = False
    if hasattr(spec.method, "max_steps"):
        # an image's steps depend on its batch from the first step on, if at all: 100
        # steps show it as well as 500 (which cost ~10 s per posterior and row)
        spec.method.max_steps = 100
    together = explain(spec, [0, 1, 2, 3, 4])
    assert together.abs().amax((1, 2)).min() > 0  # every image gets a map that is not 0
    for split in ([[0], [1], [2], [3], [4]], [[0, 1], [2, 3], [4]]):
        apart = torch.cat([explain(spec, part) for part in split])
        torch.testing.assert_close(apart, together, rtol=1e-4, atol=1e-6)
