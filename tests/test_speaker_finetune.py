"""Which development speakers tools/modelbuild/speaker_finetune.py trains on (no torch needed)."""

from collections import Counter

from tools.modelbuild.speaker_finetune import TRAINING_SOURCES, training_speakers


def voices(per_source: dict[str, int]) -> dict[str, dict[str, list[str]]]:
    return {source: {f"s{i}": [f"voices/{source}/s{i}/0.wav"] for i in range(n)}
            for source, n in per_source.items()}


def test_half_of_each_licensed_source_and_nothing_else():
    listing = voices({"speechocean762": 11, "vctk": 4, "emodb_2s": 6, "urdu_talkshow": 4, "fsdd": 3})
    chosen = training_speakers(listing, seed=1)
    by_source = Counter(s.split("/")[0] for s in chosen)
    assert by_source == {"speechocean762": 5, "vctk": 2}
    assert set(by_source) <= TRAINING_SOURCES
    assert all(s.split("/")[1] in listing[s.split("/")[0]] for s in chosen)
    assert len(set(chosen)) == len(chosen)


def test_the_choice_is_seeded():
    listing = voices({"speechocean762": 40})
    assert training_speakers(listing, seed=1) == training_speakers(listing, seed=1)
    assert training_speakers(listing, seed=1) != training_speakers(listing, seed=2)

