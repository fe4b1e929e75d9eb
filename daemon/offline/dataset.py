"""An evaluation data folder and the trials built from it, shared by ``tools/evaluate.py`` and
``avid calibrate`` so that both score exactly the same comparisons.

Layout (any folder laid out like the shared development set)::

    faces/<source>/<identity>/<image>          (.jpg, .jpeg, .png, .pgm, .bmp)
    voices/<source>/<speaker>/<utterance>.wav
    lfw_pairs.txt                              optional, LFW View-2 format

Identities are only known to differ *within* a source (the same person may appear in two sources
under two names), so impostor trials pair people of the same source. The one exception is a
*cohort* source, whose speakers each have a single recording (e.g. LibriSpeech singletons): its
recordings are cut into segments (enrol on one, probe with the others) and its speakers serve as
impostors against everyone, since such a cohort is chosen to be disjoint from the other sources.

Trials refer to *items* by key: a face image's path relative to the data folder, or a voice unit's
key (``<relative path>`` or ``<relative path>#<segment>``). Scoring them is left to the caller.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".bmp"})
#: Voice sources made of single words: reported apart (``voice.short``), never in ``voice.eer``.
SHORT_WORD_SOURCES = frozenset({"fsdd", "an4"})
#: Speech (after the VAD) an utterance needs to count as sentence-length.
MIN_SENTENCE_SECONDS = 2.0
#: Length of the segments a cohort speaker's single recording is cut into.
SEGMENT_SECONDS = 4.0
LFW_PAIRS_NAME = "lfw_pairs.txt"


@dataclass
class DataSet:
    """What a data folder holds: face images and voice recordings, by source and identity."""

    root: Path
    faces: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    voices: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    lfw_pairs: Path | None = None

    def path(self, key: str) -> Path:
        """The file behind an item key (a voice unit's segment suffix is dropped)."""
        return self.root / key.split("#", 1)[0]

    @property
    def face_files(self) -> list[str]:
        """Every face image, as keys relative to the root."""
        return [f for ids in self.faces.values() for files in ids.values() for f in files]

    @property
    def voice_files(self) -> list[str]:
        """Every voice recording, as keys relative to the root."""
        return [f for spk in self.voices.values() for files in spk.values() for f in files]

    def without_voices(self, identities) -> "DataSet":
        """The same data without the recordings of the given speakers (``source/speaker``): the
        speakers a fine-tuned speaker model was trained on, whose scores would flatter it."""
        excluded = set(identities)
        voices = {source: {speaker: files for speaker, files in speakers.items()
                           if f"{source}/{speaker}" not in excluded}
                  for source, speakers in self.voices.items()}
        voices = {source: speakers for source, speakers in voices.items() if speakers}
        dropped = sum(len(s) for s in self.voices.values()) - sum(len(s) for s in voices.values())
        if dropped:
            log.info("%s: %d speakers left out (the speaker model was trained on them), %d remain",
                     self.root, dropped, sum(len(s) for s in voices.values()))
        return dataclasses.replace(self, voices=voices)

    def cohort_sources(self) -> frozenset[str]:
        """Sentence sources where every speaker has exactly one recording (cut into segments)."""
        return frozenset(source for source, speakers in self.voices.items()
                         if source not in SHORT_WORD_SOURCES and len(speakers) > 1
                         and all(len(files) == 1 for files in speakers.values()))


def _listing(folder: Path, root: Path, suffixes) -> dict[str, dict[str, list[str]]]:
    sources: dict[str, dict[str, list[str]]] = {}
    if not folder.is_dir():
        return sources
    for source in sorted(p for p in folder.iterdir() if p.is_dir()):
        identities = {}
        for identity in sorted(p for p in source.iterdir() if p.is_dir()):
            files = sorted(str(f.relative_to(root)) for f in identity.rglob("*")
                           if f.is_file() and f.suffix.lower() in suffixes)
            if files:
                identities[identity.name] = files
        if identities:
            sources[source.name] = identities
    return sources


def scan(root: str | Path) -> DataSet:
    """Walk a data folder; raise :class:`FileNotFoundError` if it holds neither faces nor voices."""
    root = Path(root).resolve()
    data = DataSet(root, _listing(root / "faces", root, IMAGE_SUFFIXES),
                   _listing(root / "voices", root, {".wav"}))
    pairs = root / LFW_PAIRS_NAME
    data.lfw_pairs = pairs if pairs.is_file() else None
    if not data.faces and not data.voices:
        raise FileNotFoundError(f"{root} has no faces/<source>/<identity>/ nor voices/<source>/<speaker>/")
    log.info("%s: %d face images of %d identities, %d recordings of %d speakers", root,
             len(data.face_files), sum(len(i) for i in data.faces.values()),
             len(data.voice_files), sum(len(s) for s in data.voices.values()))
    return data


# --------------------------------------------------------------------------------------------
# Trials
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One comparison: enrolment item(s) against one probe item.

    ``subject`` is the enrolled identity (``source/name``); the subject bootstrap resamples it.
    """

    enrol: tuple[str, ...]
    probe: str
    genuine: bool
    subject: str
    source: str


def split_halves(names, seed: int) -> tuple[set, set]:
    """Split identities into two halves at random (seeded): (calibration half, test half)."""
    names = sorted(names)
    random.Random(f"halves-{seed}").shuffle(names)
    middle = (len(names) + 1) // 2
    return set(names[:middle]), set(names[middle:])


def face_pair_trials(identities: dict[str, list[str]], source: str, seed: int,
                     max_impostors: int = 300_000) -> list[Trial]:
    """Every genuine pair of one source, and its impostor pairs (a seeded sample if too many).

    ``identities`` maps each identity to its images' keys.
    """
    trials = [Trial((a,), b, True, f"{source}/{name}", source)
              for name, files in sorted(identities.items()) for a, b in combinations(files, 2)]
    images = [(f, name) for name, files in sorted(identities.items()) for f in files]
    n = len(images)
    sizes = [len(files) for files in identities.values()]
    n_impostor_pairs = (n * (n - 1) - sum(k * (k - 1) for k in sizes)) // 2
    if n_impostor_pairs <= max_impostors:
        trials += [Trial((a,), b, False, f"{source}/{na}", source)
                   for (a, na), (b, nb) in combinations(images, 2) if na != nb]
        return trials
    rng = random.Random(f"face-impostors-{source}-{seed}")
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < max_impostors:
        i, j = rng.randrange(n), rng.randrange(n)
        if i == j or images[i][1] == images[j][1]:
            continue
        chosen.add((min(i, j), max(i, j)))
    for i, j in sorted(chosen):
        trials.append(Trial((images[i][0],), images[j][0], False, f"{source}/{images[i][1]}", source))
    return trials


@dataclass(frozen=True)
class VoiceUnit:
    """One utterance, or one segment of a cohort speaker's recording, with its speech length."""

    key: str
    source: str
    speaker: str
    seconds: float
    usable: bool  # an embedding exists

    @property
    def identity(self) -> str:
        return f"{self.source}/{self.speaker}"


def speakers_of(units: list[VoiceUnit], min_seconds: float, min_units: int) -> dict[str, list[VoiceUnit]]:
    """Speakers with at least ``min_units`` usable units of ``min_seconds`` of speech or more."""
    by_speaker: dict[str, list[VoiceUnit]] = defaultdict(list)
    for unit in units:
        if unit.usable and unit.seconds >= min_seconds:
            by_speaker[unit.identity].append(unit)
    return {name: sorted(found, key=lambda u: u.key)
            for name, found in sorted(by_speaker.items()) if len(found) >= min_units}


def compatible_sources(a: str, b: str, cohort: frozenset[str]) -> bool:
    """Whether people of sources ``a`` and ``b`` are known to be different people."""
    return a == b or a in cohort or b in cohort


def voice_trials(units: list[VoiceUnit], n_enrol: int, seed: int, cohort: frozenset[str] = frozenset(),
                 min_seconds: float = MIN_SENTENCE_SECONDS, max_genuine_per_speaker: int = 6,
                 max_impostors_per_speaker: int = 500, all_probes: list[VoiceUnit] | None = None,
                 only_speakers: set[str] | None = None) -> list[Trial]:
    """Enrolment with ``n_enrol`` utterances, genuine and impostor probes, capped per speaker.

    A speaker needs ``n_enrol + 1`` usable utterances of at least ``min_seconds``. Enrolment sets
    rotate through the speaker's (shuffled) utterances and the other utterances are the genuine
    probes; impostor probes are the eligible utterances of every compatible other speaker (same
    source, or a cohort source). Both are sampled down to the caps so that every speaker weighs
    about the same. ``all_probes`` (default: the eligible units) are the probe candidates, so
    unusable probes can be kept and scored as non-matches. ``only_speakers`` restricts both the
    enrolled speakers and the probes to a subset (a calibration or test half).
    """
    speakers = speakers_of(units, min_seconds, n_enrol + 1)
    pool = all_probes if all_probes is not None else [u for u in units
                                                       if u.usable and u.seconds >= min_seconds]
    if only_speakers is not None:
        speakers = {k: v for k, v in speakers.items() if k in only_speakers}
        pool = [u for u in pool if u.identity in only_speakers]
    probes_by_source: dict[str, list[VoiceUnit]] = defaultdict(list)
    for unit in pool:
        probes_by_source[unit.source].append(unit)
    trials = []
    for name, found in speakers.items():
        rng = random.Random(f"voice-{name}-{n_enrol}-{seed}")
        order = list(found)
        rng.shuffle(order)
        enrol_sets = [tuple(order[(i + k) % len(order)] for k in range(n_enrol))
                      for i in range(len(order))]
        genuine = []
        for enrol in enrol_sets:
            keys = {u.key for u in enrol}
            genuine += [(enrol, p) for p in probes_by_source[found[0].source]
                        if p.identity == name and p.key not in keys]
        rng.shuffle(genuine)
        source = found[0].source
        for enrol, probe in genuine[:max_genuine_per_speaker]:
            trials.append(Trial(tuple(u.key for u in enrol), probe.key, True, name, source))
        others = [p for s, group in sorted(probes_by_source.items())
                  if compatible_sources(source, s, cohort) for p in group if p.identity != name]
        chosen = rng.sample(others, min(len(others), max_impostors_per_speaker))
        for i, probe in enumerate(chosen):
            enrol = enrol_sets[i % len(enrol_sets)]
            trials.append(Trial(tuple(u.key for u in enrol), probe.key, False, name, source))
    return trials


# --------------------------------------------------------------------------------------------
# Chimeric identities (a face of one person with the voice of another) for fusion
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chimera:
    """A made-up person: one face identity and one voice speaker, never seen together.

    ``attempts`` are (face image, voice unit) probe pairs, none used for enrolment.
    ``voice_enrol_more`` are the further utterances of an enrolment from several
    (:attr:`voice_enrolment` is all of them).
    """

    name: str
    face_identity: str
    voice_identity: str
    face_enrol: str
    voice_enrol: str
    attempts: tuple[tuple[str, str], ...]
    voice_enrol_more: tuple[str, ...] = ()

    @property
    def voice_enrolment(self) -> tuple[str, ...]:
        """Every voice unit the person is enrolled from."""
        return (self.voice_enrol, *self.voice_enrol_more)

    @property
    def face_source(self) -> str:
        return self.face_identity.split("/", 1)[0]

    @property
    def voice_source(self) -> str:
        return self.voice_identity.split("/", 1)[0]

    def compatible(self, other: "Chimera", cohort: frozenset[str]) -> bool:
        """Whether the two are known to be different people in both modalities."""
        return (self.face_identity != other.face_identity and self.voice_identity != other.voice_identity
                and self.face_source == other.face_source
                and compatible_sources(self.voice_source, other.voice_source, cohort))


def make_chimeras(faces: dict[str, list[tuple[str, bool]]], voices: dict[str, list[VoiceUnit]],
                  seed: int, attempts_per_person: int = 3, voice_enrol_units: int = 1,
                  voice_held_units: int | None = None) -> list[Chimera]:
    """Pair each voice speaker with a distinct face identity (seeded).

    ``faces`` maps ``source/identity`` to its images as (key, enrolment would take it); an identity
    needs one such image (the enrolment: a door refuses to enrol a photo without a good face) and
    another image; attempts use the other images, whatever their quality. ``voices`` maps speakers to their eligible
    units (the first ``voice_enrol_units``, in a seeded order, are the enrolment). Each chimera gets up to
    ``attempts_per_person`` attempts pairing its remaining images and utterances in turn.

    ``voice_held_units`` (default: ``voice_enrol_units``) leading units are kept out of the attempts,
    so that enrolments from 1 and from n utterances of the same speakers can be tested on the same
    attempts; speakers with no unit left for an attempt are left out. The pairing of faces and
    speakers depends only on ``seed`` and the speakers given.
    """
    if voice_enrol_units < 1:
        raise ValueError(f"voice_enrol_units must be >= 1, got {voice_enrol_units}")
    held = max(voice_enrol_units, voice_held_units or 0)
    rng = random.Random(f"chimeras-{seed}")
    face_pool = []
    for identity, images in sorted(faces.items()):
        found = [key for key, ok in images if ok]
        if found and len(images) >= 2:
            face_pool.append(identity)
    rng.shuffle(face_pool)
    speakers = sorted(voices)
    rng.shuffle(speakers)
    if len(face_pool) < len(speakers):
        log.warning("only %d face identities for %d voice speakers: %d speakers left out",
                    len(face_pool), len(speakers), len(speakers) - len(face_pool))
    chimeras = []
    for number, (speaker, face_identity) in enumerate(zip(speakers, face_pool)):
        images = list(faces[face_identity])
        rng.shuffle(images)
        face_enrol = next(key for key, ok in images if ok)
        # Attempts use every other image, whatever its quality: the door scores every face it can
        # align, and an image without one is a failed attempt, counted as such.
        face_probes = [key for key, _ in images if key != face_enrol]
        units = [u.key for u in voices[speaker]]
        rng.shuffle(units)
        voice_probes = units[held:]
        if not voice_probes:
            continue
        n = min(attempts_per_person, max(len(face_probes), len(voice_probes)))
        attempts = tuple((face_probes[i % len(face_probes)], voice_probes[i % len(voice_probes)])
                         for i in range(n))
        chimeras.append(Chimera(f"chimera{number:04d}", face_identity, speaker, face_enrol,
                                units[0], attempts, tuple(units[1:voice_enrol_units])))
    return chimeras
