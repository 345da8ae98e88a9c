"""A user's posterior from TorchScript files or a factory, checked on the data's shape."""

import pytest
import torch
from torch import nn

from tests._models import tiny_cnn_members
from uattr import FullGrad, GuidedBackprop
from uattr.posteriors.loading import check_model, load_model
from uattr.uq import Ensemble, as_posterior


def _scripted(members, folder):
    paths = []
    for i, member in enumerate(members):
        path = folder / f"member{i}.pt"
        torch.jit.save(torch.jit.script(member.eval()), str(path))
        paths.append(str(path))
    return paths


def test_torchscript_members_are_the_ensemble_they_were_saved_from(tmp_path):
    members = tiny_cnn_members(members=3)
    posterior = load_model(_scripted(members, tmp_path))
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(posterior(x), Ensemble(members)(x))
    assert check_model(posterior, (1, 8, 8)) == 3


class _Stacked(nn.Module):
    """Members stacked as [(S·B), C], member-major: TorchUncertainty's layout."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        return torch.cat([member(x) for member in self.members])


def test_one_module_returning_stacked_members_needs_num_samples(tmp_path):
    members = tiny_cnn_members(members=2)
    path = tmp_path / "stacked.pt"
    torch.jit.save(torch.jit.script(_Stacked(members).eval()), str(path))
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    posterior = load_model([str(path)], num_samples=2)
    torch.testing.assert_close(posterior(x), Ensemble(members)(x))
    with pytest.raises(ValueError, match=r"--model: its output does not fit: .*num_samples"):
        check_model(load_model([str(path)]), (1, 8, 8))


def test_a_factory_in_a_file_builds_the_posterior(tmp_path):
    (tmp_path / "mine.py").write_text(
        "from tests._models import tiny_cnn_members\n"
        "def build():\n"
        "    return tiny_cnn_members(members=2)\n")
    posterior = load_model(f"{tmp_path / 'mine.py'}:build")
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(posterior(x), as_posterior(tiny_cnn_members(members=2))(x))


def test_probabilities_are_taken_as_they_are_with_output_probs(tmp_path):
    members = [nn.Sequential(m, nn.Softmax(-1)) for m in tiny_cnn_members(members=2)]
    posterior = load_model(_scripted(members, tmp_path), output="probs")
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(posterior(x), Ensemble(tiny_cnn_members(members=2))(x))
    # the same files read as logits would be softmaxed twice: named, not silently used
    with pytest.warns(UserWarning, match="already sum to 1"):
        load_model(_scripted(members, tmp_path))(x)


def test_models_that_do_not_fit_the_images_are_named(tmp_path):
    paths = _scripted(tiny_cnn_members(members=2), tmp_path)  # 1 input channel
    with pytest.raises(ValueError, match=r"does not take images \[B, C, H, W\] = \[2, 3, 8, 8\]"):
        check_model(load_model(paths), (3, 8, 8))
    (tmp_path / "weights.pt").write_bytes(b"not torchscript")
    with pytest.raises(ValueError, match="is not a TorchScript file"):
        load_model([str(tmp_path / "weights.pt")])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model([str(tmp_path / "missing.pt")])
    with pytest.raises(ValueError, match="has no function 'nothing'"):
        load_model("tests._models:nothing")


def test_exported_programs_load_like_torchscript(tmp_path):
    members = tiny_cnn_members(members=2)
    batch = torch.export.Dim("batch", min=2)
    paths = []
    for i, member in enumerate(members):
        program = torch.export.export(member.eval(), (torch.rand(2, 1, 8, 8),),
                                      dynamic_shapes=({0: batch},))
        paths.append(str(tmp_path / f"member{i}.pt2"))
        torch.export.save(program, paths[-1])
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(load_model(paths)(x), Ensemble(members)(x))
    # the program has no conv or ReLU module left: the methods that hook them say so
    # rather than return a map without their terms
    for method in (FullGrad, GuidedBackprop):
        with pytest.raises(ValueError, match="compiles away"):
            method(load_model(paths)).attribute(x)
    (tmp_path / "bad.pt2").write_bytes(b"not a program")
    with pytest.raises(ValueError, match=r"is not a torch\.export program"):
        load_model([str(tmp_path / "bad.pt2")])
