"""The command line's shared arguments: argparse types that check a value while parsing,
the option groups every subcommand shares, and the one function that turns parsed
arguments into the layers' :class:`~uattr.experiments.settings.Settings`."""

from __future__ import annotations

import argparse
import dataclasses

from ..attribution.optimization import STOPS
from ..experiments.commands import float_in, non_negative_int, positive_int
from ..experiments.job import POSTERIOR_KINDS
from ..experiments.registry import METHOD_INITS, ROWS
from ..experiments.settings import DataSettings, MethodSettings, PosteriorSettings, Settings
from ..zoo import data, models

# The defaults of the command line are the settings' (those of OptimizationUA and slic,
# chosen on the validation split: docs/hyperparameters.md), written nowhere else.
DEFAULT = Settings()
POSTERIORS = tuple(POSTERIOR_KINDS)
# Every method of the tables (the oracle rows use the answer, so they explain nothing).
EXPLAIN_METHODS = tuple(row.name for row in ROWS if not row.oracle)


# argparse types (uattr.experiments.commands, where the benchmarks' own options use them)
positive = float_in(0.0, low_open=True)
non_negative = float_in(0.0)
probability = float_in(0.0, 1.0)


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default=DEFAULT.data.dataset, choices=data.DATASETS)
    parser.add_argument("--data-dir", default=None,
                        help="folder of the data set's files: IDX for fashion-mnist (default: "
                             "Debian's path); the python-version batches of cifar10/cifar100; "
                             "train_32x32.mat and test_32x32.mat of svhn")
    parser.add_argument("--posterior", dest="kind", default=DEFAULT.posterior.kind,
                        choices=POSTERIORS,
                        help="the posterior uattr loads (its shipped weights) or trains on "
                             "the data set: " + "; ".join(
                                 f"{kind.name}: {kind.help}" for kind in POSTERIOR_KINDS.values())
                             + " (default ensemble)")
    parser.add_argument("--arch", default=DEFAULT.posterior.arch, choices=models.ARCHITECTURES,
                        help="the ensemble members' network: small-cnn (papers/001's for MNIST "
                             "and SVHN; default) or resnet18 (its CIFAR-10 one)")
    parser.add_argument("--model", nargs="+", default=[], metavar="FILE|MODULE:FUNCTION",
                        help="your own posterior instead: TorchScript files (several: the "
                             "members of an ensemble; one: a module returning [B, S, C], or "
                             "[(S·B), C] with --num-samples), or a factory module:function "
                             "or file.py:function returning a posterior or a list of modules")
    parser.add_argument("--output", default=DEFAULT.posterior.output,
                        choices=("logits", "probs"),
                        help="what --model returns (default logits)")
    parser.add_argument("--trust-output", action="store_true",
                        help="take --output as given even when --model's outputs look like "
                             "the other kind (values that already sum to 1 under logits)")
    parser.add_argument("--num-samples", type=positive_int, default=None,
                        help="S, when --model returns members stacked as [(S·B), C]")
    parser.add_argument("--members", type=positive_int, default=DEFAULT.posterior.members,
                        help=f"ensemble size (default {DEFAULT.posterior.members})")
    parser.add_argument("--epochs", type=positive_int, default=DEFAULT.posterior.epochs,
                        help="training epochs per member")
    parser.add_argument("--ensemble-index", type=non_negative_int,
                        default=DEFAULT.posterior.ensemble_index, metavar="K",
                        help="which of the independently trained ensembles (default 0): "
                             "ensemble K trains member s with seed K·members + s; uattr "
                             "ships 0, 1 and 2 for MNIST")
    parser.add_argument("--retrain", action="store_true",
                        help="train the posterior (and the VAE, the corruption detector) on "
                             "this machine instead of loading the weights uattr ships; what "
                             "was trained here before is reused, except by uattr train, "
                             "which trains again")
    parser.add_argument("--cache-dir", default=None,
                        help="where trained models are cached (default $UATTR_CACHE or "
                             "~/.cache/uattr)")
    parser.add_argument("--device", default=DEFAULT.device,
                        help="torch device, e.g. cpu or cuda")


def add_method_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uncertainty", default=DEFAULT.method.uncertainty,
                        choices=("total", "aleatoric", "epistemic"))
    parser.add_argument("--lam", type=non_negative, default=DEFAULT.method.lam,
                        help="sparsity weight λ")
    parser.add_argument("--tau", type=positive, default=DEFAULT.method.tau,
                        help="Gumbel temperature τ")
    parser.add_argument("--sigma-init", type=positive, default=DEFAULT.method.sigma_init,
                        help="initial blur width as a fraction of the image side")
    parser.add_argument("--max-steps", type=positive_int, default=DEFAULT.method.max_steps,
                        help="the optimization-based method's most Adam steps per image "
                             f"(default {DEFAULT.method.max_steps}, the paper's); an image "
                             "stops earlier when its stopping rule fires")
    parser.add_argument("--stop", choices=STOPS, default=DEFAULT.method.stop,
                        help="the optimization-based method's stopping rule: loss (the "
                             "expected loss stopped falling, papers/001 A.2), mask (the "
                             "binary mask stopped changing; no forward pass per check; per "
                             "pixel up to 2%% of the pixels may flip) or movement (the "
                             "probabilities stopped moving) "
                             f"(default {DEFAULT.method.stop})")
    parser.add_argument("--init", choices=METHOD_INITS, default=DEFAULT.method.init,
                        help="where its mask starts: zeros (p = 0.5, the paper's), "
                             "first-order (each segment's first-order blur effect, one more "
                             "forward and backward pass) or amortized (the map of the "
                             "posterior's amortised explainer, one pass of its network; "
                             "shipped for the shipped posteriors, else made as uattr train "
                             f"--amortized makes it) (default {DEFAULT.method.init})")
    parser.add_argument("--n-segments", type=positive_int, default=DEFAULT.method.n_segments,
                        help=f"slic segments per image (default {DEFAULT.method.n_segments}; "
                             "the row 'amortized + first-order (slic)' takes 25 in place of "
                             "the default)")
    parser.add_argument("--compactness", type=positive, default=DEFAULT.method.compactness,
                        help="slic compactness")
    parser.add_argument("--seed", type=int, default=DEFAULT.method.seed)
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT.batch_size,
                        help="images attributed together")


def add_posterior_options(parser: argparse.ArgumentParser,
                           train_images: int | None = None) -> None:
    posterior = DEFAULT.posterior
    parser.add_argument("--samples", type=positive_int, default=posterior.samples,
                        help="posterior samples of a single-network posterior (default "
                             f"{posterior.samples})")
    parser.add_argument("--dropconnect-p", type=probability, default=posterior.dropconnect_p,
                        help=f"DropConnect's drop probability (default "
                             f"{posterior.dropconnect_p})")
    parser.add_argument("--posterior-train", type=positive_int, default=train_images,
                        help="training images of a single-network posterior (default "
                             f"{train_images or 'all'})")


def add_results(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default=None, metavar="DIR",
                        help="also copy the tables, figures and report (not the cells) to "
                             "DIR, e.g. docs/results/<run> to commit them")


def settings_from(args: argparse.Namespace) -> Settings:
    """The job's settings from the parsed arguments; the one place that reads them for
    the layers below (an argument a subcommand lacks keeps the settings' default)."""

    def chosen(kind: type) -> dict:
        return {f.name: getattr(args, f.name) for f in dataclasses.fields(kind)
                if hasattr(args, f.name)}

    posterior = chosen(PosteriorSettings)
    posterior["model"] = tuple(posterior.get("model") or ())
    return Settings(data=DataSettings(**chosen(DataSettings)),
                    posterior=PosteriorSettings(**posterior),
                    method=MethodSettings(**chosen(MethodSettings)),
                    **{k: v for k, v in chosen(Settings).items()
                       if k not in ("data", "posterior", "method")})


def arguments_record(args: argparse.Namespace) -> dict:
    """The command's arguments as ``run.json`` records them."""
    return {k: v for k, v in vars(args).items() if not callable(v)}


def add_parallel(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="run the work (shards, or a benchmark's method × images cells) "
                             "on a local Ray with this many CPUs, one worker each; the results "
                             "are those of one process")
    parser.add_argument("--address", default=None,
                        help="run it on an existing Ray cluster instead: auto or HOST:PORT")


def add_split_and_method(parser: argparse.ArgumentParser) -> None:
    """``--split`` and ``--method`` (any method of the tables) of explain and attribute."""
    parser.add_argument("--split", default="test", choices=data.SPLITS)
    parser.add_argument("--method", default="optimization (slic)", choices=EXPLAIN_METHODS,
                        metavar="METHOD",
                        help=f"any method of the tables (default 'optimization (slic)'): "
                             f"{', '.join(EXPLAIN_METHODS)}")
