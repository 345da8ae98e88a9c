import torch

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
