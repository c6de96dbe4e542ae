"""Test-time views of a crop: a CNN's logit averaged over the crop, its mirror and small shifts.

A CNN trained with horizontal flips (and shifts) sees a face and its mirror image as equally
likely, so the mean logit over those views is a steadier estimate than one view alone. Which
views a model gets is part of its manifest entry (`tta_mirror` 0/1, `tta_shift_px`), recorded by
its export from the spec's preprocessing (kiosk/contract/models.py), because thresholds and
fusion are fitted on that mean: an entry without them means the crop alone. The morph CNN
(kiosk/runtime/forensics/morph.py) uses them; the compliance classifiers do not: a mirror view
narrowly won on accuracy but doubles their per-frame cost (reports/verdicts/mirror_tta_trial.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kiosk.contract.errors import ModelError


def view_count(mirror: bool = False, shift_px: int = 0) -> int:
    """How many views `tta_views` makes: 1, 2 with the mirror, times 5 with shifts."""
    return (2 if mirror else 1) * (5 if shift_px else 1)


def tta_views(crop: np.ndarray, mirror: bool = False, shift_px: int = 0) -> list[np.ndarray]:
    """The views of an (H, W) or (H, W, C) crop whose CNN logits are averaged: the crop and, with
    `mirror`, its left-right mirror; each also shifted by -shift_px and +shift_px in y and in x
    (reflected border, as the CNNs' training shifts: no resampling). 1, 2, 5 or 10 views."""
    images = [crop, crop[:, ::-1]] if mirror else [crop]
    if not shift_px:
        return images
    s = shift_px
    height, width = crop.shape[:2]
    pad = ((s, s), (s, s)) + ((0, 0),) * (crop.ndim - 2)
    offsets = ((0, 0), (-s, 0), (s, 0), (0, -s), (0, s))
    views = []
    for image in images:
        padded = np.pad(image, pad, mode="reflect")
        for dy, dx in offsets:
            views.append(padded[s + dy : s + dy + height, s + dx : s + dx + width])
    return views


def entry_views(
    extra: Mapping[str, Any], name: str, max_shift: int, remedy: str
) -> tuple[bool, int]:
    """(mirror, shift_px) of manifest entry `name` (`tta_mirror` 0/1, `tta_shift_px`
    0..max_shift): the views its threshold and fusion were fitted on. An entry without them
    is a bundle from before test-time views (fitted on the crop alone): (False, 0)."""
    mirror, shift = extra.get("tta_mirror", 0), extra.get("tta_shift_px", 0)
    if mirror not in (0, 1) or type(mirror) is not int:
        raise ModelError(
            f"manifest entry {name!r}: tta_mirror must be 0 or 1, got {mirror!r}; {remedy}"
        )
    if type(shift) is not int or not 0 <= shift <= max_shift:
        raise ModelError(
            f"manifest entry {name!r}: tta_shift_px must be an integer 0..."
            f"{max_shift}, got {shift!r}; {remedy}"
        )
    return bool(mirror), shift
