import pytest
import torch

from tests._models import colour_region_ensemble
from uattr import IntegratedGradients, SmoothGrad, as_posterior
from uattr.ops.chunks import images_per_pass


def test_a_chunk_holds_the_pixels_of_its_count_of_28px_images():
    assert images_per_pass(1000, 28, 28) == 1000
    assert images_per_pass(1000, 8, 8) == 1000  # smaller images keep their count
    assert images_per_pass(1000, 56, 56) == 250  # four times the pixels, a quarter
    assert images_per_pass(1000, 224, 224) == 15  # 1000 · 784 / 50 176 = 15.6
    assert images_per_pass(10, 224, 224) == 1  # never none


# (method in passes of at most 1000 images, the same in passes of one image)
_CHUNKED = [
    (lambda p: IntegratedGradients(p, n_steps=8, internal_batch_size=1000),
     lambda p: IntegratedGradients(p, n_steps=8, internal_batch_size=1)),
    (lambda p: SmoothGrad(p, n_samples=8, samples_batch_size=1000),
     lambda p: SmoothGrad(p, n_samples=8, samples_batch_size=1)),
]


@pytest.mark.parametrize(("whole", "one_by_one"), _CHUNKED, ids=["ig", "smoothgrad"])
def test_chunks_change_no_map(whole, one_by_one):
    # 16 images in passes of 1 + 15 (the first measures the memory) or in 16 passes (as
    # on images of 224 px): the same maps, up to the float32 rounding of convolutions run
    # at another batch size. float32 keeps ~7 digits and a gradient sums ~10³ products
    # through the network, so the maps agree to ~1e-4 of their scale; a chunk that lost or
    # repeated an image would move them by their whole scale
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    posterior = as_posterior(colour_region_ensemble(32, (5, 5, 10)))
    expected = one_by_one(posterior).attribute(x)
    torch.testing.assert_close(whole(posterior).attribute(x), expected, rtol=0,
                               atol=1e-4 * float(expected.abs().max()))


def test_a_chunk_holds_no_more_than_a_share_of_the_free_memory(monkeypatch):
    from uattr.ops import chunks

    monkeypatch.setattr(chunks, "_free_memory", lambda device: 8 * 2**30)  # 8 GiB free
    cpu = torch.device("cpu")
    # a ResNet-18 ensemble saving ~2.5 GiB per 224 px image: 2 GiB of 8 fit none but one
    assert chunks.within_memory(15, int(2.5 * 2**30), cpu) == 1
    assert chunks.within_memory(15, 2**28, cpu) == 8  # 256 MiB each: 2 GiB / 256 MiB
    assert chunks.within_memory(15, 2**20, cpu) == 15  # small: the pixel count decides
    # what autograd saves for a sigmoid of one 3×8×8 image: its output, 192 float32
    with chunks.saved_bytes() as saved:
        torch.sigmoid(torch.rand(1, 3, 8, 8, requires_grad=True)).sum()
    assert saved[0] == 192 * 4
