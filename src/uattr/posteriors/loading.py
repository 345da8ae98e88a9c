"""A user's own posterior, from files: TorchScript models or a Python factory.

The command line's ``--model`` takes either

* one or more TorchScript files (``torch.jit.save``) or ``.pt2`` programs
  (``torch.export.save``, exported with a dynamic batch size): several files are the
  members of a deep ensemble, each ``x -> [B, C]``; one file is a module returning
  ``[B, S, C]``, or members stacked as ``[(S·B), C]`` (TorchUncertainty's layout) with
  ``num_samples``;
* a factory ``package.module:function`` or ``path/to/file.py:function``, called with no
  arguments, returning anything :func:`uattr.as_posterior` accepts (a list of modules, a
  module, a :class:`~uattr.uq.Posterior`): the way to load state dicts into one's own
  classes.

:func:`check_model` then runs the posterior once on images of the data's shape, so that a
model that does not take these images, or returns the wrong shape, is named before any
work starts.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..uq import OutputKind, Posterior, ProbabilityLikeLogitsWarning, as_posterior, check_probs

__all__ = ["check_model", "is_factory", "load_factory", "load_model"]


def is_factory(spec: str) -> bool:
    """Whether a ``--model`` spec is a factory ``module:function`` (no such file, and a colon
    that is not a Windows drive's) rather than a TorchScript file."""
    return ":" in spec and not Path(spec).exists() and not (len(spec) > 1 and spec[1] == ":"
                                                            and spec[2:3] in ("\\", "/"))


def load_factory(spec: str) -> object:
    """Call the factory ``package.module:function`` or ``file.py:function`` and return what
    it returns. The module is imported from the current folder too, as ``python -m``
    would."""
    where, _, name = spec.rpartition(":")
    if not where or not name.isidentifier():
        raise ValueError(f"--model {spec!r}: a factory is written module:function or "
                         "file.py:function")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise FileNotFoundError(f"--model {spec!r}: file {path} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"_uattr_model_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        _call_users_code(lambda: module_spec.loader.exec_module(module), spec, str(path))
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = _call_users_code(lambda: importlib.import_module(where), spec,
                                      f"module {where!r}")
        except ImportError as error:
            raise ValueError(f"--model {spec!r}: cannot import module {where!r} ({error})") \
                from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ValueError(f"--model {spec!r}: module {where!r} has no function {name!r}")
    return _call_users_code(factory, spec, "the factory")


def _call_users_code(run, spec: str, what: str):
    """``run()``, the user's code; what it raises, or an exit it asks for, becomes a
    ``ValueError`` naming ``--model`` and the message (an exit would otherwise end the
    command with status 0 and nothing written)."""
    try:
        return run()
    except SystemExit as exit_:
        raise ValueError(f"--model {spec!r}: {what} exited (sys.exit({exit_.code!r})) instead "
                         "of returning a posterior") from None
    except ImportError:
        raise
    except Exception as error:
        first = str(error).splitlines()[0] if str(error) else ""
        raise ValueError(f"--model {spec!r}: {what} raised {type(error).__name__}: "
                         f"{first}") from None


def _load_module(path: str, device: torch.device | str) -> nn.Module:
    """A TorchScript file (``torch.jit.save``), or a ``.pt2`` program (``torch.export.save``,
    the format that replaces TorchScript)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--model: file {path} does not exist")
    if path.endswith(".pt2"):
        try:
            return torch.export.load(path).module().to(device)
        except (RuntimeError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise ValueError(f"--model: {path} is not a torch.export program "
                             f"(torch.export.save) ({error})".splitlines()[0]) from None
    try:
        module = torch.jit.load(path, map_location=device)
    except RuntimeError as error:
        raise ValueError(f"--model: {path} is not a TorchScript file (torch.jit.save); for a "
                         f"state dict, give a factory module:function instead ({error})"
                         .splitlines()[0]) from None
    return module.eval()


def load_model(specs: str | Sequence[str], *, output: OutputKind = "logits",
               num_samples: int | None = None,
               device: torch.device | str = "cpu") -> Posterior:
    """The posterior the files or factory ``specs`` describe (see the module), on
    ``device``. ``output``: what the model returns, ``"logits"`` or ``"probs"``."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    if not specs:
        raise ValueError("--model needs at least one TorchScript file or a factory")
    if any(is_factory(spec) for spec in specs):
        if len(specs) > 1:
            raise ValueError(f"--model: a factory is given alone, got {specs}")
        made = load_factory(specs[0])
        if isinstance(made, nn.Module):
            made = made.to(device).eval()
        elif isinstance(made, list | tuple):
            made = [m.to(device).eval() if isinstance(m, nn.Module) else m for m in made]
        return as_posterior(made, output=output, num_samples=num_samples)
    modules = [_load_module(spec, device) for spec in specs]
    model = modules if len(modules) > 1 else modules[0]
    if len(modules) > 1 and num_samples is not None:
        raise ValueError("--num-samples is for one module returning [(S·B), C]; several files "
                         "are already the members of an ensemble")
    return as_posterior(model, output=output, num_samples=num_samples)


def check_model(posterior: Posterior, shape: Sequence[int],
                device: torch.device | str = "cpu", *, trust_output: bool = False) -> int:
    """Run ``posterior`` on two blank images of ``shape = (C, H, W)`` and return its number
    of posterior samples S; ``ValueError`` when it does not take such images or does not
    return probabilities ``[B, S, C]``, or when it was said to return logits and returns
    values that already sum to 1 (its uncertainty would be that of a softmax of
    probabilities, nearly constant), unless ``trust_output``."""
    probe = torch.full((2, *shape), 0.5, device=device)
    try:
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ProbabilityLikeLogitsWarning)
            probs = posterior(probe)
        if not trust_output and any(issubclass(w.category, ProbabilityLikeLogitsWarning)
                                    for w in caught):
            raise ValueError("--output logits: --model returns values that already sum to 1 "
                             "like probabilities, whose softmax would flatten every "
                             "uncertainty; pass --output probs, or --trust-output if they "
                             "are logits")
    except ValueError as error:
        raise ValueError(f"--model: its output does not fit: {error}") from None
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        dims = ", ".join(str(int(d)) for d in shape)
        raise ValueError(f"--model does not take images [B, C, H, W] = [2, {dims}] (are the "
                         f"channels and the size those it was trained on? {first})") from None
    check_probs(probs, "the model's probabilities")
    return probs.shape[1]
