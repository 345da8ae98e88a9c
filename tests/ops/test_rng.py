"""Per-image generators: the same draws whatever the batch and whatever the images' device."""

import torch

from uattr.ops.rng import _draw, draw_uniform


def _generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_an_images_draws_do_not_depend_on_its_batch():
    alone = draw_uniform(_generators([7]), (1, 4, 3), torch.device("cpu"))
    together = draw_uniform(_generators([5, 7]), (2, 4, 3), torch.device("cpu"))
    assert torch.equal(together[1], alone[0])
    padded = draw_uniform(_generators([5, 7]), (2, 4, 3), torch.device("cpu"),
                          lengths=torch.tensor([3, 2]))
    assert torch.equal(padded[1, :, :2], torch.rand(4, 2, generator=_generators([7])[0]))
    assert (padded[1, :, 2] == 0).all()


def test_draws_are_made_on_the_generators_device_then_moved_to_the_images():
    # a CUDA sampler refuses a CPU generator; drawing on the generator's device and then
    # moving the draws makes a map on a GPU use the same random numbers as on the CPU
    asked = []

    def sampler(size, *, generator, device, dtype):
        asked.append(torch.device(device))
        return torch.rand(size, generator=generator, device=device, dtype=dtype)

    out = _draw(sampler, _generators([1, 2]), (2, 3), torch.device("meta"), torch.float32,
                None)
    assert asked == [torch.device("cpu")] * 2 and out.device.type == "meta"
    _draw(sampler, torch.Generator().manual_seed(3), (2, 3), torch.device("meta"),
          torch.float32, torch.tensor([3, 1]))
    assert asked[-1] == torch.device("cpu")
