"""Trial building of daemon/offline/dataset.py on synthetic identities (no models needed)."""

from collections import Counter

import pytest

from daemon.offline.dataset import (
    VoiceUnit, face_pair_trials, make_chimeras, scan, split_halves, voice_trials,
)
from tiny_data import build


def test_scan_finds_sources_cohort_and_pairs(tmp_path):
    data = scan(build(tmp_path / "data"))
    assert set(data.faces) == {"lfw"}
    assert len(data.faces["lfw"]) == 6
    assert set(data.voices) == {"speechocean762", "librispeech_train-clean-100_singletons", "fsdd"}
    assert data.cohort_sources() == {"librispeech_train-clean-100_singletons"}
    assert data.lfw_pairs is not None
    assert all(data.path(k).is_file() for k in data.face_files + data.voice_files)


def test_scan_refuses_an_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        scan(tmp_path)


def identities(n_people, n_images):
    return {f"p{i}": [f"faces/s/p{i}/{j}.jpg" for j in range(n_images)] for i in range(n_people)}


def test_face_pairs_are_all_genuine_and_all_impostor_when_small():
    trials = face_pair_trials(identities(4, 3), "s", seed=1)
    genuine = [t for t in trials if t.genuine]
    impostor = [t for t in trials if not t.genuine]
    assert len(genuine) == 4 * 3
    assert len(impostor) == (12 * 11) // 2 - 12
    assert all(t.enrol[0].split("/")[2] == t.probe.split("/")[2] for t in genuine)
    assert all(t.enrol[0].split("/")[2] != t.probe.split("/")[2] for t in impostor)


def test_face_impostors_are_a_seeded_sample_when_too_many():
    first = face_pair_trials(identities(30, 4), "s", seed=3, max_impostors=500)
    again = face_pair_trials(identities(30, 4), "s", seed=3, max_impostors=500)
    other = face_pair_trials(identities(30, 4), "s", seed=4, max_impostors=500)
    impostor = [t for t in first if not t.genuine]
    assert len(impostor) == 500
    assert len({(t.enrol, t.probe) for t in impostor}) == 500
    assert first == again
    assert first != other
    assert sum(t.genuine for t in first) == 30 * 6


def units(source, speakers, per_speaker, seconds=3.0):
    return [VoiceUnit(f"voices/{source}/{s}/{j}.wav", source, f"{s}", seconds, True)
            for s in range(speakers) for j in range(per_speaker)]


def test_voice_trials_cap_per_speaker_and_keep_impostors_within_compatible_sources():
    pool = units("a", 5, 10) + units("b", 4, 3) + [
        VoiceUnit(f"voices/c/c{s}/x.wav#{k}", "c", f"c{s}", 4.0, True) for s in range(3) for k in range(3)]
    trials = voice_trials(pool, 1, seed=1, cohort=frozenset({"c"}), max_genuine_per_speaker=6,
                          max_impostors_per_speaker=20)
    genuine = Counter(t.subject for t in trials if t.genuine)
    impostor = Counter(t.subject for t in trials if not t.genuine)
    assert max(genuine.values()) == 6
    assert genuine["b/0"] == 6  # 3 enrolments x 2 other utterances
    assert all(n <= 20 for n in impostor.values())
    for t in trials:
        probe_source = t.probe.split("/")[1]
        assert t.genuine == (t.probe.split("/")[2] == t.subject.split("/")[1])
        assert probe_source == t.source or "c" in (probe_source, t.source)
        assert t.probe not in t.enrol


def test_voice_trials_skip_short_utterances_and_few_shot_needs_four():
    pool = units("a", 3, 4) + [
        VoiceUnit("voices/a/9/short.wav", "a", "9", 1.5, True)]
    one = voice_trials(pool, 1, seed=1)
    assert all("short" not in t.probe for t in one)
    few = voice_trials(pool, 3, seed=1)
    assert {len(t.enrol) for t in few} == {3}
    assert {t.subject for t in few} == {"a/0", "a/1", "a/2"}


def test_chimeras_pair_distinct_identities_and_enrol_on_a_found_face():
    faces = {f"lfw/p{i}": [(f"faces/lfw/p{i}/0.jpg", i % 2 == 0), (f"faces/lfw/p{i}/1.jpg", True)]
             for i in range(12)}
    voices = {f"a/{s}": [u for u in units("a", 8, 3) if u.speaker == str(s)] for s in range(8)}
    chimeras = make_chimeras(faces, voices, seed=2)
    assert len(chimeras) == 8
    assert len({c.face_identity for c in chimeras}) == 8
    assert len({c.voice_identity for c in chimeras}) == 8
    for c in chimeras:
        assert c.face_enrol.endswith("1.jpg") or int(c.face_identity.split("p")[1]) % 2 == 0
        assert all(f != c.face_enrol and v != c.voice_enrol for f, v in c.attempts)
        assert 1 <= len(c.attempts) <= 3
    assert chimeras == make_chimeras(faces, voices, seed=2)


def test_split_halves_is_a_seeded_partition():
    first, second = split_halves([f"x{i}" for i in range(11)], seed=5)
    assert first.isdisjoint(second)
    assert len(first | second) == 11
    assert (first, second) == split_halves([f"x{i}" for i in reversed(range(11))], seed=5)


def test_chimeras_enrolled_from_several_utterances_are_tested_on_the_same_attempts():
    faces = {f"lfw/p{i}": [(f"faces/lfw/p{i}/{j}.jpg", True) for j in range(3)] for i in range(12)}
    voices = {f"a/{s}": [u for u in units("a", 8, 2 + s % 3) if u.speaker == str(s)] for s in range(8)}
    two = make_chimeras(faces, voices, seed=5, voice_enrol_units=2)
    one = make_chimeras(faces, voices, seed=5, voice_enrol_units=1, voice_held_units=2)
    # speakers with only the two enrolment utterances have nothing left to attempt with
    assert {c.voice_identity for c in two} == {v for v, found in voices.items() if len(found) >= 3}
    assert [(c.face_identity, c.voice_identity, c.attempts) for c in one] == \
        [(c.face_identity, c.voice_identity, c.attempts) for c in two]
    for a, b in zip(one, two):
        assert len(a.voice_enrolment) == 1 and len(b.voice_enrolment) == 2
        assert a.voice_enrol == b.voice_enrol
        assert not set(b.voice_enrolment) & {v for _, v in b.attempts}
    with pytest.raises(ValueError):
        make_chimeras(faces, voices, seed=5, voice_enrol_units=0)


def test_without_voices_leaves_out_exactly_the_named_speakers(tmp_path):
    data = scan(build(tmp_path / "data"))
    speakers = sorted(f"{source}/{s}" for source, spk in data.voices.items() for s in spk)
    left_out = speakers[:2]
    kept = data.without_voices(left_out)
    remaining = sorted(f"{source}/{s}" for source, spk in kept.voices.items() for s in spk)
    assert remaining == speakers[2:]
    assert kept.faces == data.faces and kept.lfw_pairs == data.lfw_pairs
    assert not any(f.split("/")[1] + "/" + f.split("/")[2] in left_out for f in kept.voice_files)
    # the original is untouched, and a source with nobody left disappears
    assert sorted(f"{source}/{s}" for source, spk in data.voices.items() for s in spk) == speakers
    whole_source = [f"fsdd/{s}" for s in data.voices["fsdd"]]
    assert "fsdd" not in data.without_voices(whole_source).voices
    assert data.without_voices([]).voices == data.voices
