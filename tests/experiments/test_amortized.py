"""The amortised explainer of a posterior, made once: its targets are the per-pixel method's
maps of the most uncertain training images, stored chunk by chunk; its network is cached
and loaded back; the registry makes its row only when it is named.

On scikit-learn's 8×8 digits with a tiny two-member ensemble and a small configuration
(seconds)."""

import dataclasses

import pytest
import torch

from tests._models import tiny_cnn_members
from uattr import OptimizationUA, as_posterior
from uattr.experiments import amortized
from uattr.experiments.amortized import (
    AmortizedConfig,
    amortized_name,
    load_or_train_amortized,
    targets_folder,
)
from uattr.experiments.common import most_uncertain
from uattr.experiments.registry import (
    detection_methods,
    needs_amortized,
    optimization,
    pixel_methods,
)
from uattr.experiments.settings import (
    DataSettings,
    MethodSettings,
    PosteriorSettings,
    Settings,
)
from uattr.ops.rng import index_generators
from uattr.zoo import data

SMALL = AmortizedConfig(n_train=12, epochs=2, batch_size=4, chunk=5)


def _settings(tmp_path, **method) -> Settings:
    return Settings(data=DataSettings(dataset="digits"),
                    posterior=PosteriorSettings(cache_dir=str(tmp_path)),
                    method=MethodSettings(max_steps=20, **method))


def _posterior():
    return as_posterior(tiny_cnn_members(1, classes=10, members=2))


def test_the_targets_are_the_per_pixel_maps_of_the_most_uncertain_training_images(tmp_path):
    settings, posterior = _settings(tmp_path), _posterior()
    images, maps = amortized.distillation_targets(posterior, settings, SMALL,
                                                  tmp_path / "targets", log=lambda _: None)
    chosen, indices, _ = most_uncertain(posterior, data.load("digits", "train"), 12)
    torch.testing.assert_close(images, chosen, rtol=0, atol=0)
    # the third chunk (images 10 and 11) is the per-pixel method's maps of them, with the
    # per-image generators of their indices in the training split
    teacher = amortized._teacher(posterior, settings, SMALL)
    again = teacher.attribute(chosen[10:], generator=index_generators(0, indices[10:].tolist()))
    torch.testing.assert_close(maps[10:], again, rtol=0, atol=0)
    assert sorted(p.name for p in (tmp_path / "targets").iterdir()) == [
        "maps-000000.pt", "maps-000005.pt", "maps-000010.pt"]
    # a stored chunk is read back, not made again: an edited chunk comes back as edited
    path = tmp_path / "targets" / "maps-000005.pt"
    stored = torch.load(path, weights_only=True)
    torch.save({**stored, "maps": torch.zeros_like(stored["maps"])}, path)
    _, resumed = amortized.distillation_targets(posterior, settings, SMALL,
                                                tmp_path / "targets", log=lambda _: None)
    assert resumed[5:10].abs().sum() == 0
    torch.testing.assert_close(resumed[:5], maps[:5], rtol=0, atol=0)


def test_it_is_distilled_once_then_loaded_from_the_cache(tmp_path, monkeypatch):
    settings, posterior = _settings(tmp_path), _posterior()
    made, info = load_or_train_amortized(posterior, settings, config=SMALL,
                                         log=lambda _: None)
    assert not info["shipped"] and info["name"].startswith("digits-amortized-")
    assert list(info["weights"]) == [f"{info['name']}/model.pt"]
    x = data.load("digits", "test").images[:6]

    def refuse(*args, **kwargs):
        raise AssertionError("a cached explainer must not be distilled again")

    monkeypatch.setattr(amortized, "distillation_targets", refuse)
    loaded, again = load_or_train_amortized(posterior, settings, config=SMALL,
                                            log=lambda _: None)
    assert again["weights"] == info["weights"]
    torch.testing.assert_close(loaded.attribute(x), made.attribute(x), rtol=0, atol=0)
    # the explainer's objective is the job's: λ, τ, σ0 and the uncertainty
    assert (loaded.lam, loaded.uncertainty) == (settings.method.lam, "total")


def test_its_name_changes_with_the_posterior_the_method_and_the_config(tmp_path):
    settings, posterior = _settings(tmp_path), _posterior()
    name = amortized_name(posterior, settings, SMALL)
    other = as_posterior(tiny_cnn_members(1, classes=10, members=2, seed=1))
    assert amortized_name(other, settings, SMALL) != name
    assert amortized_name(posterior, _settings(tmp_path, lam=1.0), SMALL) != name
    assert amortized_name(posterior, settings, dataclasses.replace(SMALL, epochs=3)) != name
    assert amortized_name(posterior, settings, dataclasses.replace(SMALL, width=8)) != name
    assert amortized_name(posterior, settings,
                          dataclasses.replace(SMALL, binary_targets=False)) != name
    # how the targets are cut into chunks is no setting of the explainer
    assert amortized_name(posterior, settings, dataclasses.replace(SMALL, chunk=7)) == name


def test_explainers_distilled_from_the_same_maps_share_their_targets(tmp_path):
    settings, posterior = _settings(tmp_path), _posterior()
    folder = targets_folder(posterior, settings, SMALL)
    assert folder.parent == tmp_path and folder.name.startswith("digits-amortized-targets-")
    for distillation in ({"epochs": 5}, {"width": 8}, {"binary_targets": False},
                         {"lr": 1e-2}, {"batch_size": 2}):
        assert targets_folder(posterior, settings,
                              dataclasses.replace(SMALL, **distillation)) == folder
    assert targets_folder(posterior, settings, dataclasses.replace(SMALL, n_train=13)) != folder
    assert targets_folder(posterior, _settings(tmp_path, lam=1.0), SMALL) != folder
    # a wider network on the maps' probabilities: distilled from the stored maps, none
    # made again
    load_or_train_amortized(posterior, settings, config=SMALL, log=lambda _: None)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    wide = dataclasses.replace(SMALL, width=8, binary_targets=False)
    made, info = load_or_train_amortized(posterior, settings, config=wide, log=lambda _: None)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert made.network.width == 8 and not info["spec"]["binary_targets"]


def test_the_registry_makes_its_row_only_when_named(tmp_path):
    settings, posterior = _settings(tmp_path), _posterior()
    assert not needs_amortized(None) and not needs_amortized(["grad"])
    assert needs_amortized(["grad", "amortized"])
    assert "amortized" not in detection_methods(posterior, settings.method)
    explainer, _ = load_or_train_amortized(posterior, settings, config=SMALL,
                                           log=lambda _: None)
    rows = pixel_methods(posterior, settings.method, amortized=explainer.network)
    x = data.load("digits", "test").images[:3]
    torch.testing.assert_close(rows["amortized"].method.attribute(x), explainer.attribute(x),
                               rtol=0, atol=0)


def test_settings_start_the_optimization_rows_from_the_explainer(tmp_path):
    settings, posterior = _settings(tmp_path), _posterior()
    started = _settings(tmp_path, init="amortized").method
    assert needs_amortized(None, started) and needs_amortized(["optimization (slic)"], started)
    assert not needs_amortized(["grad"], started)
    assert not needs_amortized(["optimization (slic)"], settings.method)
    # the explainer imitates the cold start's maps, whatever start the settings give:
    # one name, one cache file, for every start
    name = amortized_name(posterior, settings, SMALL)
    for init in ("first-order", "amortized"):
        assert amortized_name(posterior, _settings(tmp_path, init=init), SMALL) == name
    # without the explainer's network those rows are left out, as the explainer's own;
    # built alone they say what they lack
    assert not {"optimization (slic)", "optimization (pixels)"} & set(
        detection_methods(posterior, started))
    with pytest.raises(ValueError, match=r"init 'amortized'.*network must be given"):
        optimization(posterior, started)
    explainer, _ = load_or_train_amortized(posterior, settings, config=SMALL,
                                           log=lambda _: None)
    # after one Adam step each logit lies within lr of its start (Adam's first step is
    # lr · g / (|g| + eps)): 2q - 1 from the explainer's map q, 0 from the cold start
    one_step = dataclasses.replace(started, max_steps=1)
    rows = detection_methods(posterior, one_step, amortized=explainer.network)
    x = data.load("digits", "test").images[:3]
    start = 2 * explainer.attribute(x) - 1  # [B, H, W]
    assert start.abs().max() > 0.1  # a start the cold one is not
    lr = rows["optimization (pixels)"].method.lr
    for init, expected in (("amortized", start), ("zeros", torch.zeros_like(start))):
        method = detection_methods(posterior, dataclasses.replace(one_step, init=init),
                                   amortized=explainer.network)["optimization (pixels)"].method
        maps = method.attribute(x, generator=index_generators(0, range(3)))
        assert (torch.logit(maps.double()) - expected).abs().max() <= lr * (1 + 1e-4)
    # and the row is the library's method started from the explainer
    direct = OptimizationUA(posterior, max_steps=1, init=explainer).attribute(
        x, generator=index_generators(0, range(3)))
    torch.testing.assert_close(rows["optimization (pixels)"].method.attribute(
        x, generator=index_generators(0, range(3))), direct, rtol=0, atol=0)


def test_a_small_training_split_gives_all_its_images(tmp_path):
    settings, posterior = _settings(tmp_path), _posterior()
    big = dataclasses.replace(SMALL, n_train=10**6, chunk=10**6)
    with pytest.MonkeyPatch.context() as patch:
        # the per-pixel maps of every training image would take a while: count them only
        patch.setattr(amortized, "_teacher", lambda *a: _Zeros())
        images, maps = amortized.distillation_targets(posterior, settings, big,
                                                      tmp_path / "all", log=lambda _: None)
    assert len(images) == len(maps) == len(data.load("digits", "train"))


class _Zeros:
    def attribute(self, x, generator=None):
        return torch.zeros(x.shape[0], *x.shape[-2:])
