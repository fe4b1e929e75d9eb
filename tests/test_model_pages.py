"""Releasing the mapped model files after the models have run: less resident memory, same outputs."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

from daemon.inference.tflite import DEFAULT_MODELS_DIR, TFLiteModel, release_model_pages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")


def resident_kb(path) -> int:
    """Resident kB of this process's mappings of ``path``."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            first = line.split(maxsplit=1)[0]
            if "-" in first and not first.endswith(":"):
                inside = line.rstrip().endswith(str(path))
            elif inside and first == "Rss:":
                total += int(line.split()[1])
    return total


@pytest.fixture()
def private_models(tmp_path):
    """A copy of the models, so that no other model loaded by the test session shares the pages."""
    folder = tmp_path / "models"
    shutil.copytree(DEFAULT_MODELS_DIR, folder)
    return folder


def test_release_drops_resident_model_pages_and_outputs_stay_the_same(private_models):
    model = TFLiteModel("face_encoder", private_models)
    chip = np.random.default_rng(0).uniform(0, 255, size=model.input_specs[0].shape).astype(np.float32)
    before = model.run(chip)[0]
    resident = resident_kb(model.path.resolve())
    assert resident > 1024  # the 5.6 MB file was read while the model was prepared

    released = release_model_pages(private_models)

    assert released >= model.path.stat().st_size  # the whole mapping was advised
    assert resident_kb(model.path.resolve()) < resident / 2
    np.testing.assert_array_equal(model.run(chip)[0], before)


def test_release_touches_only_the_given_folder(private_models):
    model = TFLiteModel("face_encoder", private_models)
    model.run(np.zeros(model.input_specs[0].shape, np.float32))
    resident = resident_kb(model.path.resolve())

    assert release_model_pages(private_models / "elsewhere") == 0
    assert resident_kb(model.path.resolve()) == resident
