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
    # 16 images in one pass or in 16 (as on images of 224 px): the same maps, up to the
    # float32 summation order of a batch of another size (3 072 terms: ~1e-6 relative)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    posterior = as_posterior(colour_region_ensemble(32, (5, 5, 10)))
    torch.testing.assert_close(whole(posterior).attribute(x), one_by_one(posterior).attribute(x),
                               rtol=1e-5, atol=1e-9)
