"""SR self-ensemble on the kiosk: the entry's number of passes, checked, run and reported."""

import numpy as np
import pytest

from kiosk.contract.errors import ModelError
from kiosk.contract.manifest import load_manifest
from kiosk.contract.models import spec
from kiosk.runtime.forensics.sr import MODEL_NAME, SrCheck, entry_ensemble
from training.paths import MODELS


class CountingModel:
    """A 8x8 -> 32x32 nearest-neighbour 'model' that counts its inferences."""

    input_shape = (1, 8, 8, 1)

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, values: np.ndarray) -> np.ndarray:
        assert values.shape == self.input_shape
        self.calls += 1
        return np.kron(values, np.ones((1, 4, 4, 1), np.float32))


def test_sr_check_runs_one_inference_per_transform():
    face = np.random.default_rng(5).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    outputs = {}
    for n in (1, 4):
        model = CountingModel()
        outputs[n] = SrCheck(model, 256, n).upscale(face)
        assert model.calls == n and outputs[n].shape == (32, 32, 3)
    # nearest-neighbour upscaling commutes with every transform: the ensemble changes nothing
    np.testing.assert_array_equal(outputs[1], outputs[4])


def test_entry_ensemble_defaults_to_one_pass_and_refuses_other_values():
    assert entry_ensemble({}) == 1  # a bundle exported before the self-ensemble
    assert entry_ensemble({"self_ensemble": 4}) == 4
    for bad in (3, 0, True, "4", 4.0):
        with pytest.raises(ModelError, match="self_ensemble must be 1, 2, 4 or 8"):
            entry_ensemble({"self_ensemble": bad})


def test_the_shipped_entry_records_the_specs_self_ensemble():
    entry = load_manifest(MODELS).models[MODEL_NAME]
    assert entry_ensemble(entry.extra) == spec(MODEL_NAME).parameter("self_ensemble")
