"""The method registry: every family's mean over the rows present."""

import pytest

from uattr.registry import FAMILIES, PIXEL_METHODS, family_means


def test_family_means_average_only_the_rows_present():
    rows = [{"method": "grad", "IoU": 0.2}, {"method": "ua-backprop", "IoU": 0.5},
            {"method": "occlusion", "IoU": 0.6}, {"method": "not a method", "IoU": 9.0}]
    means = family_means(rows, ("IoU",))
    assert [m["family"] for m in means] == ["gradient", "perturbation"]
    assert means[0]["IoU"] == pytest.approx(0.35) and means[0]["methods"] == 2
    assert means[1]["IoU"] == pytest.approx(0.6) and means[1]["methods"] == 1


def test_every_pixel_method_belongs_to_exactly_one_family():
    owners = {name: [f for f, names in FAMILIES.items() if name in names]
              for name in PIXEL_METHODS}
    assert all(len(found) == 1 for found in owners.values()), owners
