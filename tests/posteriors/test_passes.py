"""Forward/backward pass counts, against counts worked out from each method's settings."""

import pytest
import torch
from torch import nn

from tests._models import SpotPosterior, tiny_cnn_members
from uattr import as_posterior
from uattr.attribution import Grad, IntegratedGradients, Occlusion, UABackprop
from uattr.posteriors.passes import PassCounter

X = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def ensemble():
    return as_posterior(tiny_cnn_members(members=3, classes=4, seed=1))


def per_image(posterior, method, x=X):
    with PassCounter(posterior) as count:
        method.attribute(x)
    return count.forward / len(x), count.backward / len(x)


def test_grad_is_one_forward_and_one_backward_pass(ensemble):
    assert per_image(ensemble, Grad(ensemble)) == (1, 1)


def test_integrated_gradients_spends_one_pass_of_each_per_step(ensemble):
    assert per_image(ensemble, IntegratedGradients(ensemble, n_steps=7)) == (7, 7)


def test_ua_backprop_counts_each_batched_cotangent_as_a_backward_pass(ensemble):
    # one forward pass, one vector-Jacobian product per logit: S·C = 3·4, split into
    # batched calls of 5 cotangents
    method = UABackprop(ensemble, path="gradient", logits_per_pass=5)
    assert per_image(ensemble, method) == (1, 12)


def test_occlusion_is_one_forward_pass_per_window_plus_the_image(ensemble):
    # 8×8 image, 4×4 window, stride 2: 3×3 positions; Captum adds the unperturbed image
    method = Occlusion(ensemble, window=4, stride=2)
    assert per_image(ensemble, method) == (10, 0)


def test_a_module_posterior_is_counted_once_per_image():
    members = tiny_cnn_members(members=2, classes=3, seed=2)

    class Stacked(nn.Module):  # [(S·B), C], members first
        def __init__(self):
            super().__init__()
            self.members = nn.ModuleList(members)

        def forward(self, x):
            return torch.cat([m(x) for m in self.members])

    posterior = as_posterior(Stacked(), num_samples=2)
    assert per_image(posterior, Grad(posterior)) == (1, 1)


def test_a_bare_callable_cannot_be_counted():
    posterior = SpotPosterior((2, 2))
    assert PassCounter(posterior).available  # a module: counted through itself
    counter = PassCounter(lambda x: posterior(x))
    assert not counter.available
    with counter:
        Grad(lambda x: posterior(x)).attribute(X)
    assert (counter.forward, counter.backward) == (0, 0)


@pytest.mark.parametrize("kind", ["mc-dropout", "dropconnect"])
def test_a_sampled_posterior_is_counted_once_per_image_whichever_call_runs_it(kind):
    # S = 3 runs of one network make one pass, through forward (Grad) or through logits
    # (UA-Backprop, which pushes one cotangent per logit: S·C = 3·4 backward passes)
    from uattr import MCDropConnect, MCDropout

    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.5),
                        nn.Linear(16, 4))
    posterior = (MCDropout(net, samples=3) if kind == "mc-dropout"
                 else MCDropConnect(net, samples=3))
    assert per_image(posterior, Grad(posterior)) == (1, 1)
    method = UABackprop(posterior, path="gradient", logits_per_pass=5)
    assert per_image(posterior, method) == (1, 12)
