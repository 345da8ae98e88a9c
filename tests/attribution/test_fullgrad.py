import pytest
import torch
from torch import nn

from tests._models import tiny_cnn_members
from uattr import FullGrad, as_posterior
from uattr.attribution.fullgrad import conv_bias_gradients


class _OneConv(nn.Module):
    """f = w·x + b (1×1 conv, one channel); class-0 logit = Σ_pixels a ⊙ f."""

    def __init__(self, w: float, b: float, seed: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(w)
            self.conv.bias.fill_(b)
        self.a = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(seed)) * 0.3

    def forward(self, x):
        z = (self.conv(x) * self.a).sum((1, 2, 3))
        return torch.stack([z, torch.zeros_like(z)], -1)


def _min_max(t):
    t = t.abs()
    return (t - t.min()) / (t.max() - t.min())


def test_fullgrad_by_hand_on_one_conv_layer():
    w, b = 0.7, 0.4
    members = [_OneConv(w, b, seed=0), _OneConv(w, b, seed=1)]
    posterior = as_posterior(members)
    x = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    # U written by hand as a function of x and of each member's conv output f_m
    xg = x.clone().requires_grad_()
    fs = [(m.conv.weight * x + m.conv.bias.view(1, -1, 1, 1)).detach().requires_grad_()
          for m in members]

    def total_uncertainty(features):
        zs = [(f * m.a).sum((1, 2, 3)) for f, m in zip(features, members, strict=True)]
        p = torch.stack([torch.stack([z, torch.zeros_like(z)], -1).softmax(-1) for z in zs],
                        1).mean(1)
        return -(p * p.log()).sum()

    f_grads = torch.autograd.grad(total_uncertainty(fs), fs)  # ∂U/∂f_m
    (x_grad,) = torch.autograd.grad(
        total_uncertainty([w * xg + b for _ in members]), xg)  # ∂U/∂x = w Σ_m ∂U/∂f_m
    expected = _min_max(x_grad * x)[0, 0]
    for g in f_grads:
        expected = expected + _min_max(g * b)[0, 0]
    torch.testing.assert_close(FullGrad(posterior).attribute(x)[0], expected, rtol=1e-5,
                               atol=1e-6)


def test_fullgrad_without_biases_is_the_normalised_gradient_times_input():
    members = tiny_cnn_members(members=2, seed=4)
    for m in members:
        m[0].bias = None
    posterior = as_posterior(members)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(FullGrad(posterior).uncertainty_of(xg).sum(), xg)
    expected = torch.stack([_min_max(grad[i] * x[i])[0] for i in range(2)])
    torch.testing.assert_close(FullGrad(posterior).attribute(x), expected)


def test_fullgrad_normalises_each_image_on_its_own():
    posterior = as_posterior(tiny_cnn_members(members=3, seed=6))
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    together = FullGrad(posterior).attribute(x)
    for i in range(3):
        torch.testing.assert_close(together[i : i + 1], FullGrad(posterior).attribute(x[i : i + 1]),
                                   rtol=1e-5, atol=1e-6)


def test_fullgrad_needs_a_module_posterior():
    members = tiny_cnn_members()

    def probs(x):
        return torch.stack([m(x).softmax(-1) for m in members], 1)

    with pytest.raises(ValueError, match=r"nn\.Module"):
        FullGrad(probs).attribute(torch.rand(1, 1, 8, 8))


def _conv_bn_net(seed: int, affine: bool = True) -> nn.Sequential:
    """conv (no bias) → BatchNorm (eval, random running statistics) → ReLU → conv (bias):
    piecewise linear, as a ResNet's blocks are."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.BatchNorm2d(3, affine=affine),
                        nn.ReLU(), nn.Conv2d(3, 2, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        net[1].running_mean.copy_(torch.randn(3, generator=g))
        net[1].running_var.copy_(torch.rand(3, generator=g) + 0.5)
    return net.eval()


@pytest.mark.parametrize("affine", [True, False])
def test_the_bias_gradients_complete_a_piecewise_linear_network_with_batchnorm(affine):
    # s(x) = Σ ∇_x s ⊙ x + Σ_l Σ ∇_{f_l} s ⊙ b_l holds exactly for a piecewise-linear
    # network once BatchNorm's implicit bias β - γμ/√(σ²+ε) is one of the b_l: without it,
    # the sum misses a term of the size of the activations
    net = _conv_bn_net(seed=3, affine=affine)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(4))

    def scalar(images):
        return net(images).sum((1, 2, 3))  # [B]

    input_grad, bias_grads = conv_bias_gradients(net, scalar, x)
    assert len(bias_grads) == 2  # the BatchNorm and the biased conv; not the plain conv
    parts = (input_grad * x).sum((1, 2, 3)) + sum(g.sum((1, 2, 3)) for g in bias_grads)
    # float32 sums of a few hundred O(1) terms: ~1e-5 of the value
    torch.testing.assert_close(parts, scalar(x).detach(), rtol=1e-4, atol=1e-4)
    without_bn = (input_grad * x).sum((1, 2, 3)) + bias_grads[1].sum((1, 2, 3))
    assert (without_bn - scalar(x)).abs().min() > 0.1


def test_a_batchnorm_in_training_mode_adds_no_bias_term():
    # in training mode its "bias" depends on the batch's statistics: not the network's
    net = _conv_bn_net(seed=5).train()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    _, bias_grads = conv_bias_gradients(net, lambda images: net(images).sum((1, 2, 3)), x)
    assert len(bias_grads) == 1  # the biased conv only
