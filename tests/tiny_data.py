"""A tiny data folder for the evaluation and calibration tests, built from real files of
../shared/data (never copied into the repository): a few LFW identities with two images each, a
LFW pairs file over two folds, a few speechocean762 speakers, two LibriSpeech singletons (a
cohort source) and two FSDD digit speakers (a short-word source)."""

from __future__ import annotations

import shutil
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

LFW_IDENTITIES = ["Aaron_Sorkin", "Abdoulaye_Wade", "Abdullah", "Abdullah_Gul", "Adam_Sandler",
                  "Adel_Al-Jubeir"]
SPEECHOCEAN = ["0001", "0005", "0024", "0036"]
SINGLETONS = ["441", "3374"]
FSDD = {"george": ["0_0.wav", "1_0.wav", "2_0.wav"], "lucas": ["0_0.wav", "1_0.wav", "2_0.wav"]}


def _copy(relative: str, root: Path) -> None:
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SHARED / relative, target)


def build(root: Path) -> Path:
    """Create the folder under ``root`` and return it."""
    for name in LFW_IDENTITIES:
        for index in (1, 2):
            _copy(f"faces/lfw/{name}/{index:04d}.jpg", root)
    for speaker in SPEECHOCEAN:
        for wav in sorted((SHARED / "voices/speechocean762" / speaker).glob("*.wav"))[:3]:
            _copy(str(wav.relative_to(SHARED)), root)
    for speaker in SINGLETONS:
        for wav in sorted((SHARED / "voices/librispeech_train-clean-100_singletons" / speaker).glob("*.wav")):
            _copy(str(wav.relative_to(SHARED)), root)
    for speaker, files in FSDD.items():
        for wav in files:
            _copy(f"voices/fsdd/{speaker}/{wav}", root)
    a, b, c, d = LFW_IDENTITIES[:4]
    # Two folds of one matched and one mismatched pair each, in the LFW pairs.txt format.
    (root / "lfw_pairs.txt").write_text(
        f"2\t1\n{a}\t1\t2\n{a}\t1\t{b}\t2\n{c}\t1\t2\n{c}\t2\t{d}\t1\n")
    return root
