"""The method registry: every family's mean over the rows present."""

import pytest
import torch

from tests._models import SpotPosterior, tiny_cnn_members, tiny_vae
from uattr import OptimizationUA, segment
from uattr.attribution.amortized import MaskNet
from uattr.attribution.base import UncertaintyAttribution
from uattr.experiments.common import MethodSpec, attribute_in_batches
from uattr.experiments.registry import (
    AMORTIZED,
    DETECTION_ROWS,
    FAMILIES,
    GENERATIVE,
    ORACLE,
    PARTIAL,
    PIXEL_METHODS,
    detection_methods,
    family_means,
)
from uattr.experiments.settings import MethodSettings
from uattr.ops.rng import index_generators


def test_family_means_average_only_the_rows_present():
    rows = [{"method": "grad", "IoU": 0.2}, {"method": "ua-backprop", "IoU": 0.5},
            {"method": "occlusion", "IoU": 0.6}, {"method": "not a method", "IoU": 9.0}]
    means = family_means(rows, ("IoU",))
    assert [m["family"] for m in means] == ["gradient", "perturbation"]
    assert means[0]["IoU"] == pytest.approx(0.35) and means[0]["methods"] == 2
    assert means[1]["IoU"] == pytest.approx(0.6) and means[1]["methods"] == 1


def test_every_pixel_method_belongs_to_exactly_one_family():
    owners = {name: [f for f, names in FAMILIES.items() if name in names]
              for name in PIXEL_METHODS}
    assert all(len(found) == 1 for found in owners.values()), owners


def test_the_registry_builds_the_detection_rows_in_order_and_families_skip_oracles():
    from uattr import as_posterior

    # a deep ensemble of networks returning logits runs every row
    ensemble = as_posterior(tiny_cnn_members())
    specs = detection_methods(ensemble, MethodSettings(), tiny_vae(), MaskNet(1))
    assert tuple(specs) == DETECTION_ROWS
    # without its trained network the amortised explainer is left out (it is made only
    # when named: tests/experiments/test_amortized.py)
    assert AMORTIZED == ("amortized", "amortized (slic)", "amortized + first-order (slic)")
    assert tuple(detection_methods(ensemble, MethodSettings(), tiny_vae())) == tuple(
        n for n in DETECTION_ROWS if n not in AMORTIZED)
    # a posterior with no member networks leaves out CovLRP alone, and without a VAE the
    # generative rows are left out too; the others keep their order
    assert PARTIAL == ("covlrp",) and GENERATIVE == ("clue", "delta-clue")
    spot = detection_methods(SpotPosterior((1, 1)), MethodSettings(), tiny_vae())
    assert tuple(spot) == tuple(n for n in DETECTION_ROWS
                                if n not in PARTIAL and n not in AMORTIZED)
    plain = detection_methods(SpotPosterior((1, 1)), MethodSettings())
    assert tuple(plain) == tuple(n for n in DETECTION_ROWS
                                 if n not in GENERATIVE and n not in PARTIAL
                                 and n not in AMORTIZED)
    oracles = [name for name in DETECTION_ROWS if name.startswith(ORACLE)]
    assert oracles == [f"{ORACLE}optimization (slic + true patch)",
                       f"{ORACLE}kernelshap-fixed (slic + true patch)"]
    assert all(specs[name].oracle for name in oracles)
    family_rows = [name for names in FAMILIES.values() for name in names]
    assert not set(oracles) & set(family_rows)  # an upper bound is never a method
    assert sorted(family_rows) == sorted(set(DETECTION_ROWS) - set(oracles))


class _ShowSegments(UncertaintyAttribution):
    """Returns the segments it was given, as a map."""

    def attribute(self, x, *, segments=None):
        return segments.float()


def test_an_oracle_row_sees_the_true_patch_as_a_segment_of_its_own():
    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    boxes = torch.tensor([[1, 2, 3, 3], [5, 5, 3, 3], [9, 0, 3, 3]])
    spec = MethodSpec("shown", _ShowSegments(SpotPosterior((1, 1))),
                      lambda x: segment.grid(x, cell=4), oracle=True)
    shown = attribute_in_batches(spec, x, batch_size=2, device="cpu", boxes=boxes)
    for b, (top, left, h, w) in enumerate(boxes.tolist()):
        inside = torch.zeros(12, 12, dtype=torch.bool)
        inside[top : top + h, left : left + w] = True
        label = shown[b, top, left]
        assert torch.equal(shown[b] == label, inside)
    plain = MethodSpec("plain", spec.method, spec.segmenter)
    assert torch.equal(attribute_in_batches(plain, x, 2, "cpu"), segment.grid(x, 4).float())
    with pytest.raises(ValueError, match="oracle row needs"):
        attribute_in_batches(spec, x, 2, "cpu")


def test_a_detection_row_of_the_optimization_reports_the_steps_it_took():
    from uattr import OptimizationUA
    from uattr.experiments.benchmarks.detection import DetectionSet, run_detection

    x = torch.zeros(4, 1, 16, 16)
    x[:, 0, 4:8, 12:16] = 1.0  # a bright cell around the spot (5, 13)
    boxes = torch.tensor([[4, 12, 4, 4]] * 4)
    found = DetectionSet(x, boxes, torch.arange(4), torch.zeros(4), torch.ones(4),
                         torch.ones(4))
    method = OptimizationUA(SpotPosterior((5, 13)), lam=0.5, max_steps=200, tol=0.01, seed=0)
    spec = MethodSpec("optimization (grid)", method, lambda x: segment.grid(x, cell=4))
    rows, _ = run_detection(found, [spec], batch_size=3, log=lambda _: None)
    result_steps = []
    for i in (0, 3):  # the same two batches, as the benchmark ran them
        part = x[i : i + 3]
        result = method.attribute_with_diagnostics(
            part, segments=segment.grid(part, cell=4),
            generator=index_generators(0, range(i, i + len(part))))
        result_steps.append(result)
    steps = torch.cat([r.steps for r in result_steps]).double()
    converged = torch.cat([r.converged for r in result_steps])
    assert rows[0]["mean steps"] == pytest.approx(float(steps.mean()))
    assert rows[0]["median steps"] == pytest.approx(float(steps.median()))
    assert rows[0]["share at the limit"] == pytest.approx(float((~converged).double().mean()))
    assert rows[0]["IoU"] == 1.0  # the bright cell is found
    grad_rows, _ = run_detection(found, [MethodSpec("plain", _ShowSegments(SpotPosterior(
        (4, 12))), lambda x: segment.grid(x, cell=4))], log=lambda _: None)
    assert "mean steps" not in grad_rows[0]  # only a method that optimises has steps


class _Brightness(UncertaintyAttribution):
    """The image itself as a map: it finds a box where the bright cell is."""

    def attribute(self, x, *, segments=None):
        return x.mean(1)


class _FixedPeak(UncertaintyAttribution):
    """One peak at rows 4-7, columns 12-15 of every image, whatever the image."""

    def attribute(self, x, *, segments=None):
        maps = torch.zeros(x.shape[0], *x.shape[-2:])
        maps[:, 4:8, 12:16] = 1.0
        return maps


def test_detection_rows_say_how_far_each_is_from_the_best_in_paired_standard_errors():
    from uattr.experiments.benchmarks.detection import DetectionSet, run_detection

    x = torch.zeros(4, 1, 16, 16)
    x[:2, 0, 4:8, 12:16] = 1.0  # images 0, 1: the bright cell is the true patch
    x[2:, 0, 10:14, 0:4] = 1.0  # images 2, 3: it is elsewhere
    boxes = torch.tensor([[4, 12, 4, 4]] * 4)
    found = DetectionSet(x, boxes, torch.arange(4), torch.zeros(4), torch.ones(4),
                         torch.ones(4))
    posterior = SpotPosterior((0, 0))
    bright, peak = run_detection(found, [MethodSpec("bright", _Brightness(posterior)),
                                         MethodSpec("peak", _FixedPeak(posterior))],
                                 log=lambda _: None)[0]
    # per image IoU: bright [1, 1, 0, 0], peak [1, 1, 1, 1]; the sample std of [1, 1, 0, 0]
    # or of [0, 0, -1, -1] is sqrt(1/3), over sqrt(4) images
    assert (bright["IoU"], peak["IoU"]) == (0.5, 1.0)
    assert bright["IoU s.e."] == pytest.approx(3 ** -0.5 / 2)
    assert peak["IoU s.e."] == 0.0
    assert bright["IoU - best"] == -0.5 and peak["IoU - best"] == 0.0
    assert bright["its s.e."] == pytest.approx(3 ** -0.5 / 2) and peak["its s.e."] == 0.0
    # an oracle row is measured against the best method, and is never the best itself
    bright, oracle = run_detection(found, [MethodSpec("bright", _Brightness(posterior)),
                                           MethodSpec("oracle: peak", _FixedPeak(posterior),
                                                      lambda x: segment.grid(x, 4),
                                                      oracle=True)],
                                   log=lambda _: None)[0]
    assert bright["IoU - best"] == 0.0 and oracle["IoU - best"] == 0.5


@pytest.mark.parametrize("name", ["smoothgrad", "optimization (slic)", "lime"])
def test_a_random_row_draws_per_image_so_its_maps_do_not_depend_on_the_batch(name):
    """Each image draws from its own generator (the method's seed and the image's
    position), so batches of 2 and of 5 give the same maps as attributing each image with
    that generator; one generator per batch would make them differ."""
    x = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    specs = detection_methods(SpotPosterior((5, 9)), MethodSettings(), None)
    spec = specs[name]
    twos = attribute_in_batches(spec, x, batch_size=2, device="cpu")
    fives = attribute_in_batches(spec, x, batch_size=5, device="cpu")
    seg = spec.segmenter(x) if spec.segmenter is not None else None
    alone = spec.method.attribute(x, segments=seg,
                                  generator=index_generators(spec.method.seed, range(5)))
    shared = spec.method.attribute(x, segments=seg)  # one generator for the whole batch
    # float32 sums over at most a few hundred terms: 1e-5 of the map's scale is ample
    scale = float(alone.abs().max())
    assert torch.allclose(twos, alone, rtol=0, atol=1e-5 * scale)
    assert torch.allclose(fives, alone, rtol=0, atol=1e-5 * scale)
    assert not torch.allclose(shared, alone, rtol=0, atol=1e-4 * scale)


def test_the_rows_that_say_they_hook_layers_are_those_whose_methods_need_them(tmp_path):
    """A row's ``hooks`` (what uattr explain refuses on TorchScript before any work) is
    what its method does: on a TorchScript posterior, exactly those rows raise."""
    import torch

    from tests._models import tiny_cnn_members, tiny_vae
    from uattr.experiments.registry import ROWS, _build
    from uattr.experiments.settings import MethodSettings
    from uattr.uq import as_posterior

    scripted = as_posterior([torch.jit.script(m) for m in tiny_cnn_members(seed=4)])
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    refused = set()
    for row in ROWS:
        if row.oracle or row.family == "optimization" or row.over_segments:
            continue  # no hooks by construction, and minutes of work to show it
        # an untrained mask network: the amortised map is one pass of it, no hooks
        method = _build(row, scripted, MethodSettings(), tiny_vae(), MaskNet(1).eval())
        try:
            method.attribute(x)
        except ValueError as error:
            assert "compile" in str(error), (row.name, error)
            refused.add(row.name)
    assert refused == {row.name for row in ROWS if row.hooks}


def test_a_posterior_kind_added_to_the_registry_is_what_load_posterior_returns(monkeypatch):
    import pytest

    from tests._models import tiny_cnn_members
    from uattr.experiments import job
    from uattr.experiments.settings import PosteriorSettings, Settings
    from uattr.uq import as_posterior

    made = as_posterior(tiny_cnn_members(seed=6))
    calls = []

    def load(settings, retrain=False):
        calls.append(retrain)
        return made, {"description": "mine", "weights": {}}

    monkeypatch.setitem(job.POSTERIOR_KINDS, "mine", job.PosteriorKind("mine", "a test", load))
    posterior, info = job.load_posterior(Settings(posterior=PosteriorSettings(kind="mine")))
    assert posterior is made and info["description"] == "mine" and calls == [False]
    with pytest.raises(ValueError, match=r"posterior must be one of \('ensemble', "):
        job.load_posterior(Settings(posterior=PosteriorSettings(kind="nope")))


def test_a_row_the_posterior_cannot_run_is_named_as_such_not_as_unknown():
    from uattr.experiments.job import choose_methods

    available = detection_methods(SpotPosterior((1, 1)), MethodSettings())  # no covlrp
    with pytest.raises(ValueError, match=r"\['covlrp'\] cannot explain this kind of posterior"):
        choose_methods(available, ["grad", "covlrp"], "detection")
    with pytest.raises(ValueError, match=r"unknown \['sam'\] for detection"):
        choose_methods(available, ["grad", "sam"], "detection")
    assert [spec.name for spec in choose_methods(available, ["covgi", "grad"], "x")] == [
        "covgi", "grad"]  # in the order asked


def test_the_per_pixel_row_stops_on_the_mask_with_its_own_tolerance():
    from uattr.experiments.registry import PIXEL_MASK_RULE

    posterior = SpotPosterior((1, 1))
    masked = detection_methods(posterior, MethodSettings(stop="mask"))
    pixels, slic = masked["optimization (pixels)"].method, masked["optimization (slic)"].method
    assert (pixels.mask_tol, pixels.mask_patience) == (PIXEL_MASK_RULE["mask_tol"],
                                                      PIXEL_MASK_RULE["mask_patience"])
    assert (slic.mask_tol, slic.mask_patience) == (0.0, 4)  # the segments' defaults
    # under the loss rule the mask rule's settings are unused: the row's key is unchanged
    plain = detection_methods(posterior, MethodSettings())["optimization (pixels)"].method
    assert plain.key_settings() == OptimizationUA(posterior, progress=True).key_settings()


def test_the_first_order_amortised_row_segments_with_its_own_slic_count():
    # the row averages the explainer with the first-order effect over 25 slic segments
    # where the settings hold the default count (60), which the other slic rows keep (and
    # key their cells by); a count chosen for the job applies to it too
    from uattr import as_posterior

    ensemble = as_posterior(tiny_cnn_members(3))
    x = torch.rand(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    for settings, own in ((MethodSettings(compactness=0.1), 25),
                          (MethodSettings(n_segments=80, compactness=0.1), 80)):
        specs = detection_methods(ensemble, settings, amortized=MaskNet(3))
        row, plain = specs["amortized + first-order (slic)"], specs["amortized (slic)"]
        assert row.config == {"n_segments": own, "compactness": 0.1}
        assert plain.config == {"n_segments": settings.n_segments, "compactness": 0.1}
        assert row.method.first_order and not plain.method.first_order
        assert torch.equal(row.segmenter(x), segment.slic(x, n_segments=own, compactness=0.1))
        assert torch.equal(plain.segmenter(x),
                           segment.slic(x, n_segments=settings.n_segments, compactness=0.1))
