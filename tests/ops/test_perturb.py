import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from uattr.ops import perturb
from uattr.ops.perturb import gaussian_blur, gaussian_kernel1d


def test_tiny_sigma_is_the_identity():
    x = torch.rand(3, 2, 12, 12)
    torch.testing.assert_close(gaussian_blur(x, torch.full((3,), 1e-3)), x)


def test_mass_is_preserved_away_from_the_border():
    x = torch.zeros(2, 1, 32, 32)
    x[:, :, 12:20, 10:14] = torch.rand(2, 1, 8, 4)
    blurred = gaussian_blur(x, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(blurred.sum((1, 2, 3)), x.sum((1, 2, 3)))
    assert (blurred[:, :, 12:20, 10:14] != x[:, :, 12:20, 10:14]).any()


def test_a_constant_image_stays_constant():
    x = torch.full((1, 3, 9, 9), 0.37)
    torch.testing.assert_close(gaussian_blur(x, 2.5), x)


def test_kernel_matches_the_gaussian_formula():
    kernel = gaussian_kernel1d(torch.tensor([1.5]), radius=3)[0]
    offsets = torch.arange(-3, 4, dtype=torch.float32)
    expected = torch.exp(-(offsets**2) / (2 * 1.5**2))
    torch.testing.assert_close(kernel, expected / expected.sum())


def test_each_image_gets_its_own_width():
    x = torch.rand(2, 1, 16, 16)
    sigma = torch.tensor([0.8, 2.0])
    both = gaussian_blur(x, sigma, radius=6)
    torch.testing.assert_close(both[:1], gaussian_blur(x[:1], sigma[:1], radius=6))
    torch.testing.assert_close(both[1:], gaussian_blur(x[1:], sigma[1:], radius=6))


def test_blur_is_differentiable_in_sigma():
    x = torch.zeros(1, 1, 15, 15)
    x[0, 0, 7, 7] = 1.0
    sigma = torch.tensor([1.0], requires_grad=True)
    gaussian_blur(x, sigma)[0, 0, 7, 7].backward()
    assert sigma.grad.item() < 0  # a wider blur lowers the peak


@pytest.mark.parametrize("shape", [(2, 3, 9, 14), (1, 1, 28, 28), (3, 3, 32, 20)])
@pytest.mark.parametrize("path", ["matrix", "convolution"])
def test_each_path_is_scipys_mirror_correlation_with_the_same_kernel(monkeypatch, shape, path):
    # The blur is two 1-d correlations with reflect ("mirror": the edge pixel is not
    # repeated) borders; SciPy's correlate1d is an independent implementation of both.
    monkeypatch.setattr(perturb, "_MATRIX_FROM", 0.0 if path == "matrix" else math.inf)
    generator = torch.Generator().manual_seed(sum(shape))
    x = torch.rand(shape, generator=generator, dtype=torch.float64)
    sigma = torch.linspace(0.7, 2.4, shape[0], dtype=torch.float64)
    radius = min(6, shape[2] - 1, shape[3] - 1)
    kernel = gaussian_kernel1d(sigma, radius).numpy()
    expected = np.stack([
        ndimage.correlate1d(ndimage.correlate1d(x[b].numpy(), kernel[b], axis=2,
                                                mode="mirror"), kernel[b], axis=1,
                            mode="mirror") for b in range(shape[0])])
    blurred = gaussian_blur(x, sigma, radius=radius).numpy()
    np.testing.assert_allclose(blurred, expected, rtol=0, atol=1e-12)  # float64


@pytest.mark.parametrize("shape", [(2, 3, 9, 14), (4, 3, 28, 28)])
def test_both_paths_give_the_same_gradients(monkeypatch, shape):
    # the same values and the same derivatives in x and σ, to float32 rounding: a sum of
    # at most (2·radius + 1)² products of numbers of order 1 per pixel
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(shape, generator=generator)
    cotangent = torch.randn(shape, generator=generator)
    results = []
    for threshold in (0.0, math.inf):
        monkeypatch.setattr(perturb, "_MATRIX_FROM", threshold)
        leaf = x.clone().requires_grad_()
        sigma = torch.linspace(0.8, 2.0, shape[0]).requires_grad_()
        blurred = gaussian_blur(leaf, sigma)
        results.append((blurred, *torch.autograd.grad((blurred * cotangent).sum(),
                                                      (leaf, sigma))))
    for matrix, convolution in zip(*results, strict=True):
        torch.testing.assert_close(matrix, convolution, rtol=1e-5, atol=1e-5)
