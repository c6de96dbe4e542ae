"""Test-time views of the compliance classifiers: the manifest entry's `tta_mirror` makes the
check's CNN logit the mean of the crop's and its mirror's (kiosk/runtime/models/views.py); an
entry without it scores the crop alone, as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kiosk.contract.errors import ModelError
from kiosk.runtime.checks.eyes_closed import EyesClosed
from kiosk.runtime.checks.mouth_open import MouthOpen
from kiosk.runtime.checks.veil import Veil
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.models.views import entry_views, tta_views, view_count
from tests.conftest import REPO

CHECKS = (EyesClosed, MouthOpen, Veil)


def bundle(folder: Path, **fields: object) -> ModelRegistry:
    """A copy of the shipped compliance models whose entries carry `fields` and no other views."""
    source = REPO / "models"
    manifest = json.loads((source / "manifest.json").read_text())
    names = [check.spec.name for check in CHECKS]
    manifest["models"] = {name: manifest["models"][name] for name in names}
    for entry in manifest["models"].values():
        shutil.copy(source / entry["file"], folder / entry["file"])
        for key in ("tta_mirror", "tta_shift_px"):
            entry.pop(key, None)
        entry.update(fields)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return ModelRegistry(folder)


def test_mirror_view_is_the_mean_logit_of_crop_and_mirror(tmp_path: Path) -> None:
    registry = bundle(tmp_path, tta_mirror=1)
    rng = np.random.default_rng(3)
    for check_type in CHECKS:
        classifier = check_type(registry).classifier
        assert classifier.views == 2
        side = check_type.spec.region.size
        crop = rng.integers(0, 256, (side, side), dtype=np.uint8)
        by_hand = (classifier.view_logit(crop) + classifier.view_logit(crop[:, ::-1])) / 2
        assert classifier.logit(crop) == pytest.approx(by_hand, rel=1e-12)
        assert classifier.score(crop) == pytest.approx(1 / (1 + np.exp(-by_hand)), rel=1e-12)


def test_an_entry_without_views_scores_the_crop_alone(tmp_path: Path) -> None:
    registry = bundle(tmp_path)
    rng = np.random.default_rng(4)
    for check_type in CHECKS:
        classifier = check_type(registry).classifier
        assert classifier.views == 1
        side = check_type.spec.region.size
        crop = rng.integers(0, 256, (side, side), dtype=np.uint8)
        assert classifier.logit(crop) == classifier.view_logit(crop)


def test_grey_crop_views_shift_with_a_reflected_border() -> None:
    crop = np.random.default_rng(5).integers(0, 256, (56, 56), dtype=np.uint8)
    views = tta_views(crop, True, 1)
    assert len(views) == view_count(True, 1) == 10
    assert all(v.shape == crop.shape for v in views)
    np.testing.assert_array_equal(views[5], crop[:, ::-1])
    np.testing.assert_array_equal(views[2][:-1], crop[1:])  # shifted down by 1 px: row 1 first
    np.testing.assert_array_equal(views[2][-1], crop[-2])  # reflected, not replicated


def test_a_bad_views_field_is_refused_at_load(tmp_path: Path) -> None:
    assert entry_views({}, "veil", 2, "redeploy") == (False, 0)
    with pytest.raises(ModelError, match=r"'eyes_closed': tta_mirror must be 0 or 1"):
        EyesClosed(bundle(tmp_path, tta_mirror=True))


def test_contract_entry_and_kiosk_agree_on_the_views() -> None:
    """Each compliance spec's views are the shipped entry's (its threshold and fusion were chosen
    on them) and the check's."""
    registry = ModelRegistry(REPO / "models")
    for check_type in CHECKS:
        name = check_type.spec.name
        wanted = (bool(dict(check_type.spec.preprocessing).get("tta_mirror", 0)), 0)
        assert entry_views(registry.entry(name).model_extra, name, 2, "") == wanted, name
        classifier = check_type(registry).classifier
        assert (classifier.mirror, classifier.shift_px) == wanted, name
