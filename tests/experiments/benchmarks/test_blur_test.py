"""The blurring test and the faithfulness test called from Python on a posterior whose
uncertainty depends on one pixel: a map that points at it scores what the maths says."""

import math

import pytest
import torch

from tests._models import SpotPosterior
from uattr.attribution.base import UncertaintyAttribution
from uattr.experiments.benchmarks.blur_test import run_blur_test
from uattr.experiments.benchmarks.faithfulness import run_faithfulness
from uattr.experiments.common import MethodSpec
from uattr.experiments.runs import RunFolder
from uattr.ops.perturb import blurred_reference
from uattr.uq import uncertainty

SPOT = (5, 7)


class _PointsAtTheSpot(UncertaintyAttribution):
    """1 at the spot, 0 elsewhere: the map of a method that finds the cause."""

    def attribute(self, x, *, segments=None):
        maps = torch.zeros(x.shape[0], *x.shape[2:])
        maps[:, SPOT[0], SPOT[1]] = 1.0
        return maps


class _PointsAway(UncertaintyAttribution):
    """1 in the opposite corner: a map whose top pixels never touch the cause."""

    def attribute(self, x, *, segments=None):
        maps = torch.zeros(x.shape[0], *x.shape[2:])
        maps[:, -1, -1] = 1.0
        return maps


def _setting():
    posterior = SpotPosterior(SPOT)
    x = torch.zeros(3, 1, 16, 16)
    x[:, 0, SPOT[0], SPOT[1]] = 0.9  # a bright spot; a blur dims it

    def entropy(s: float) -> float:  # U of the spot posterior where the spot is s
        p = 1 / (1 + math.exp(-6.0 * (1 - s)))
        return -p * math.log(p) - (1 - p) * math.log(1 - p)

    # blurring the spot leaves the blurred image's value there
    blurred = blurred_reference(x)[0, 0, SPOT[0], SPOT[1]].item()
    expected_urr = 1 - entropy(blurred) / entropy(0.9)
    methods = [MethodSpec("at the spot", _PointsAtTheSpot(posterior)),
               MethodSpec("away", _PointsAway(posterior))]
    return posterior, x, methods, expected_urr


def test_the_blurring_test_scores_a_map_that_finds_the_cause(tmp_path):
    posterior, x, methods, expected = _setting()
    u = lambda z: uncertainty(posterior(z))  # noqa: E731
    logged = []
    rows, curves = run_blur_test(x, methods, u, folder=RunFolder(tmp_path), batch_size=2,
                                 log=logged.append)
    found, away = rows
    assert 0.2 < expected < 1  # the test means something: the blur lowers U
    # the spot is blurred first: the URR jumps to its final value at once
    assert found["MURR 2%"] == pytest.approx(expected, rel=1e-4)
    assert found["MURR 5%"] == pytest.approx(expected, rel=1e-4)
    assert away["MURR 2%"] == pytest.approx(0.0, abs=1e-6)  # blurring dark pixels: nothing
    assert found["AUC-URR 2%"] < away["AUC-URR 2%"]
    _, median = curves["at the spot"]  # the URR curve
    assert median[0].item() == 0.0  # nothing blurred yet
    # from the first pixel on, the URR is the spot's
    torch.testing.assert_close(median[1:], torch.full_like(median[1:], expected), rtol=1e-4,
                               atol=0)
    again, _ = run_blur_test(x, methods, u, folder=RunFolder(tmp_path), batch_size=3,
                             log=logged.append)
    assert sum("loaded from" in line for line in logged) == 2  # both cells reused
    assert again == rows


def test_the_faithfulness_test_scores_a_map_that_finds_the_cause():
    posterior, x, methods, expected = _setting()
    rows, maps = run_faithfulness(x, methods, lambda z: uncertainty(posterior(z)),
                                  batch_size=2, max_steps=50, log=lambda _: None)
    found, away = rows
    # blurring the top 2% / 5% of the pixels blurs the spot: the URR of the blur above
    assert found["blur 2%"] == pytest.approx(expected, rel=1e-4)
    assert found["blur 5%"] == pytest.approx(expected, rel=1e-4)
    assert away["blur 2%"] == pytest.approx(0.0, abs=1e-6)
    # Adam on the spot alone (unclamped) lowers U far more than a blur does; elsewhere
    # the gradient is zero and nothing moves
    assert found["gradient 1%"] > expected
    assert away["gradient 1%"] == pytest.approx(0.0, abs=1e-6)
    assert torch.equal(maps["at the spot"][:, SPOT[0], SPOT[1]], torch.ones(3))
