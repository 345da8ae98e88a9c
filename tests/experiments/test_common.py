"""A stored cell's key: every setting a row's result depends on changes it."""

import dataclasses

import pytest
import torch

from tests._models import SpotPosterior, tiny_cnn_members, tiny_vae
from uattr.attribution.base import UncertaintyAttribution
from uattr.experiments.common import (
    NOT_IN_KEY,
    MethodSpec,
    cached_cell,
    method_key,
    posterior_key,
)
from uattr.experiments.registry import detection_methods, segmenter
from uattr.experiments.runs import RunFolder
from uattr.experiments.settings import MethodSettings
from uattr.uq import as_posterior

# a valid other value for the settings whose default is None or a word
_OTHER = {"n_perturbations": 50, "sigma_max": 3.0, "tau2": 0.5, "window": 4, "stride": 2,
          "path": "gradient", "uncertainty": "epistemic", "rule": "riemann_middle",
          "delta": 2.0, "stop": "mask", "init": "first-order"}

# settings that decide nothing while another has its default: the mask rule's while the
# loss rule stops the optimisation, the warm start's scale while the start is cold
_IDLE_UNLESS = {"mask_every": ("stop", "mask"), "mask_patience": ("stop", "mask"),
                "mask_tol": ("stop", "mask"), "init_scale": ("init", "first-order"),
                "move_tol": ("stop", "movement"), "move_patience": ("stop", "movement")}


def _other(name: str, value: object) -> object:
    """A valid value of setting ``name`` that differs from ``value``."""
    if name in _OTHER and value != _OTHER[name]:
        return _OTHER[name]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 if value > 0 else value + 0.5
    raise AssertionError(f"no other value known for {name}={value!r}")


def _specs() -> dict[str, MethodSpec]:
    return detection_methods(as_posterior(tiny_cnn_members()), MethodSettings(), tiny_vae())


@pytest.mark.parametrize("row", list(_specs()))
def test_every_constructor_argument_of_every_registered_method_changes_the_key(row):
    """... but the progress bar: a run with one and a run without share their results; and
    a setting that decides nothing while another is at its default changes the key once
    that one is not (the keys stored before the mask rule and the warm start stay)."""
    spec = _specs()[row]
    settings = spec.method.settings()
    assert settings, f"{row}: no settings read from the constructor"

    def build(arguments: dict) -> UncertaintyAttribution:
        if "vae" in arguments and isinstance(arguments["vae"], str):  # its fingerprint
            arguments = {**arguments, "vae": spec.method.vae}
        return type(spec.method)(spec.method.posterior, **arguments)

    def changes_the_key(base: dict, name: str) -> bool:
        arguments = {**base, name: _other(name, base[name]) if name != "vae" else None}
        if name == "vae":  # a generative row: another VAE
            arguments["vae"] = tiny_vae(seed=1)
        changed = build(arguments)
        assert changed.settings()[name] != base[name], name  # it keeps what it is given
        before = dataclasses.replace(spec, method=build(base))
        return method_key(dataclasses.replace(spec, method=changed)) != method_key(before)

    for name in settings:
        if name in NOT_IN_KEY:  # how the method reports its work, not its maps
            assert not changes_the_key(settings, name), f"{row}: {name} changes the key"
        elif name in _IDLE_UNLESS:
            other, value = _IDLE_UNLESS[name]
            assert not changes_the_key(settings, name), f"{row}: idle {name} changes the key"
            assert changes_the_key({**settings, other: value}, name), f"{row}: {name}"
        else:
            assert changes_the_key(settings, name), f"{row}: changing {name} keeps the key"


def test_the_segmenter_settings_and_the_posterior_change_the_key():
    spec = _specs()["kernelshap-fixed (slic)"]
    settings = MethodSettings(n_segments=30)
    fewer = dataclasses.replace(spec, segmenter=segmenter("slic", settings),
                                config={"n_segments": 30, "compactness": settings.compactness})
    assert method_key(fewer) != method_key(spec)
    other_weights = type(spec.method)(as_posterior(tiny_cnn_members(seed=1)),
                                      **spec.method.settings())
    assert method_key(dataclasses.replace(spec, method=other_weights)) != method_key(spec)
    assert method_key(dataclasses.replace(spec, oracle=True)) != method_key(spec)


def test_a_posterior_is_known_by_its_weights_and_its_plain_attributes():
    members = tiny_cnn_members()
    assert posterior_key(as_posterior(members)) == posterior_key(as_posterior(members))
    assert posterior_key(as_posterior(members)) != posterior_key(as_posterior(
        tiny_cnn_members(seed=1)))
    # no weights at all: the spot it looks at tells two apart
    assert posterior_key(SpotPosterior((1, 1))) != posterior_key(SpotPosterior((2, 1)))
    assert posterior_key(SpotPosterior((1, 1))) == posterior_key(SpotPosterior((1, 1)))


class _Constant(UncertaintyAttribution):
    """A map of ``value`` everywhere, counting its calls."""

    def __init__(self, posterior, uncertainty="total", *, value: float = 1.0) -> None:
        super().__init__(posterior, uncertainty)
        self.value = value

    def attribute(self, x, *, segments=None):
        return torch.full(x.shape[:1] + x.shape[2:], self.value)


def test_a_cell_is_computed_once_and_again_when_a_setting_changes(tmp_path):
    folder = RunFolder(tmp_path)
    calls = []

    def compute_for(spec):
        def compute():
            calls.append(spec.method.value)
            return {"value": spec.method.value}, spec.method.attribute(torch.zeros(1, 1, 2, 2))
        return compute

    spec = MethodSpec("constant", _Constant(SpotPosterior((0, 0))))
    for _ in range(2):
        record, _ = cached_cell(folder, "cell", method_key(spec), compute_for(spec),
                                log=lambda _: None)
    assert calls == [1.0] and record == {"value": 1.0}
    assert repr(spec.method) == "_Constant(uncertainty='total', value=1.0)"
    spec = MethodSpec("constant", _Constant(SpotPosterior((0, 0)), value=2.0))
    record, array = cached_cell(folder, "cell", method_key(spec), compute_for(spec),
                                log=lambda _: None)
    assert calls == [1.0, 2.0] and record == {"value": 2.0} and float(array.max()) == 2.0


def test_the_optimization_rows_keep_the_keys_stored_before_the_mask_rule_and_warm_start():
    key = method_key(_specs()["optimization (slic)"])["settings"]
    assert not {"stop", "mask_every", "mask_patience", "mask_tol", "init",
                "init_scale"} & set(key)
    assert {"lam", "tau", "check_every", "patience", "max_steps"} <= set(key)
