"""The committed tabular benchmark (``uattr tabular-bench --n 500``) follows from its
per-row values, a slice of it recomputes from the shipped MLP weights and seeded
scikit-learn models, and the README's sentences about it are those of its files."""

import json
from pathlib import Path

import numpy as np

from uattr.tabular import attribute_rows, row_uncertainty
from uattr.tabular.benchmark import cause_ranks, paired_by_group, scores
from uattr.tabular.models import mlp_ensemble, random_forest
from uattr.tabular.synthetic import FEATURES, make_set

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "docs" / "results" / "tabular-synthetic-n500-seed0"


def _load(name):
    return json.loads((FOLDER / name).read_text())


def test_the_table_and_its_pairs_follow_from_the_per_row_ranks():
    per_row = _load("tabular_synthetic_per_row.json")
    for row in _load("tabular_synthetic.json"):
        ranks = np.array(per_row[f"{row['set']} | {row['model']} | {row['method']}"])
        for key, value in scores(ranks, FEATURES).items():
            assert abs(row[key] - value) < 1e-12, (row, key)
    rank_scores = {k: (FEATURES - np.array(v)) / (FEATURES - 1) for k, v in per_row.items()}
    _same(paired_by_group(rank_scores, "rank score"), _load("tabular_synthetic_paired.json"))
    flipping = {k: np.array(v) for k, v in _load("tabular_real_per_row.json").items()}
    _same(paired_by_group(flipping, "flipping score"), _load("tabular_real_paired.json"))


def _same(computed: list[dict], stored: list[dict]) -> None:
    """The same pairs, their numbers equal to float64 rounding (sums of at most 500
    values, in an order a CPU's vector width may change: 1e-12 is ample)."""
    assert [(r["rows"], r["method"], r["against"]) for r in computed] == \
        [(r["rows"], r["method"], r["against"]) for r in stored]
    for new, old in zip(computed, stored, strict=True):
        for key, value in new.items():
            if isinstance(value, float):
                assert abs(value - old[key]) <= 1e-12 * max(1.0, abs(value)), (new, key)
            else:
                assert value == old[key]


def test_a_slice_recomputes_from_the_shipped_weights():
    """The first 12 rows of two cells: the MLPs load from the shipped weights (training
    does not run: the record names their hashes) and the forest is seeded scikit-learn."""
    record = _load("run-tabular-bench.json")
    per_row = _load("tabular_synthetic_per_row.json")
    for name, model_name, method in (("shift", "MLP ensemble ×5", "shapley"),
                                     ("noise", "random forest", "occlusion")):
        data = make_set(name, n_test=500, seed=0)
        rng = np.random.default_rng([0, 2])  # the benchmark's background draw
        reference = data.x_train[rng.choice(len(data.x_train), 32, replace=False)]
        if model_name.startswith("MLP"):
            networks, hashes = mlp_ensemble(data, 0)
            assert hashes and set(hashes) <= set(record["weights"])
            u = row_uncertainty(networks, data.kind, output="logits")
        else:
            u = row_uncertainty(random_forest(data, 0), data.kind)
        phi = attribute_rows(u, data.x_test[:12], method, background=reference).numpy()
        stored = per_row[f"{name} | {model_name} | {method}"][:12]
        assert cause_ranks(phi, data.causes[:12]).tolist() == stored


def test_the_readme_sentences_are_those_of_the_files():
    rows = {(r["set"], r["model"], r["method"]): r for r in _load("tabular_synthetic.json")}
    pairs = {(p["rows"], p["method"], p["against"]): p
             for p in _load("tabular_synthetic_paired.json")}
    real = {(p["rows"], p["method"], p["against"]): p
            for p in _load("tabular_real_paired.json")}
    text = " ".join((ROOT / "README.md").read_text().split())
    aleatoric = [r for key, r in rows.items() if key[0] != "shift"]
    others = ("covgi", "covlrp", "clue")
    lowest = min(r["top-1"] for r in aleatoric if r["method"] not in others)
    assert f"at least {lowest:.3f} of the rows of every model" in text
    assert max(r["top-1"] for r in aleatoric if r["method"] in others) < lowest
    cov = [r["rank score"] for r in aleatoric if r["method"] in ("covgi", "covlrp")]
    assert f"(rank scores {min(cov):.3f} to {max(cov):.3f})" in text
    clue = [rows[name, "MLP ensemble ×5", "clue"]["rank score"] for name in ("noise",
                                                                            "two-causes")]
    assert f"need not change the cause ({clue[0]:.3f} and {clue[1]:.3f})" in text
    validation = _load("tabular_clue_validation.json")
    chosen = [r for r in validation if r.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["λ_x"] == 0.1  # the README's λ_x = 0.1
    assert "λ_x = 0.1 chosen on validation draws" in text
    # Shapley values lead on every model of the shifted set
    for (name, model, _method), row in rows.items():
        if name == "shift":
            assert row["rank score"] <= rows[name, model, "shapley"]["rank score"]
    mlp = "shift | MLP ensemble ×5"
    lrp, gi = pairs[mlp, "shapley", "covlrp"], pairs[mlp, "shapley", "covgi"]
    opt = pairs[mlp, "shapley", "optimization"]
    assert (f"by {lrp['rank score difference']:.3f} ± {lrp['its s.e.']:.3f} over CovLRP "
            f"({lrp['in s.e.']:.1f} paired standard errors), by "
            f"{gi['rank score difference']:.3f} ± {gi['its s.e.']:.3f} over CovGI "
            f"({gi['in s.e.']:.1f} s.e.) and by "
            f"{opt['rank score difference']:.3f} ± {opt['its s.e.']:.3f} over the optimization "
            f"mask ({opt['in s.e.']:.1f} s.e.)") in text
    # the runner-up: CovLRP above CovGI by more than two paired standard errors
    gamma = pairs[mlp, "covlrp", "covgi"]
    assert gamma["in s.e."] > 2
    assert (f"ranks the shifted feature {gamma['rank score difference']:.3f} ± "
            f"{gamma['its s.e.']:.3f} higher than CovGI's Gradient×Input "
            f"({gamma['in s.e.']:.1f} s.e.)") in text
    for model in ("random forest", "boosted trees ×10"):  # hardly more unsure
        row = rows["shift", model, "shapley"]
        assert row["U test"] < 2.5 * row["U train"]
    cancer = real["breast cancer", "random order", "shapley"]
    versus = real["breast cancer", "shapley", "occlusion"]
    wine = real["wine", "shapley", "occlusion"]
    diabetes = real["diabetes", "shapley", "occlusion"]
    assert (f"{-cancer['flipping score difference']:.3f} ± {cancer['its s.e.']:.3f} more than a "
            f"random order's with Shapley values on breast cancer "
            f"({-cancer['in s.e.']:.1f} s.e.) and {versus['flipping score difference']:.3f} "
            f"± {versus['its s.e.']:.3f} more than occlusion's order "
            f"({versus['in s.e.']:.1f} s.e.)") in text
    assert 1 < wine["in s.e."] < 2 and abs(diabetes["in s.e."]) < 0.5
    assert (f"{wine['flipping score difference']:.3f} ± {wine['its s.e.']:.3f} "
            f"({wine['in s.e.']:.1f} s.e.), is within the noise") in text
