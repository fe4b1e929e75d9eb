"""``avid calibrate``: fit the score calibrations, the fused threshold and the runner-up margin on a
data folder, and say what operating point to expect.

1. Face: linear cosine→LLR calibration (:func:`~daemon.offline.fitting.fit_calibration`) on every
   genuine and (sampled) impostor image pair within each face source whose faces the door would
   score (found and big enough to align: :func:`daemon.detect.face_quality.scorable`; a face with
   another quality problem is scored, so it is in the calibration too).
2. Voice: the same on one-shot voice trials (one enrolment utterance, probes cut to 3 s of
   speech, about the length of a door attempt), sentence-length sources only, scored through the
   voice back-end (the pipeline's, or one fitted on the same speakers when evaluating).
3. Fused threshold: chimeric people (the face of one person with the voice of another; there is
   no paired data) are enrolled from one image and one utterance; their attempts (another image,
   3 s of another utterance) are scored by :func:`daemon.decide.evidence.score_evidence` exactly as
   the door scores them. The threshold is the larger of two: the smallest one whose false match
   rate on impostor attempts (one attempt against one other person) is at most the target
   (:func:`~daemon.offline.fitting.fit_operating_point`), and the smallest one at which at most
   the target fraction of *strangers* would be accepted as anyone by a door with ``gallery_size``
   people enrolled (simulated doors; the stranger's best score counts). A door compares every
   attempt with everyone enrolled, so its false accept rate is up to ``gallery_size`` times the
   per-comparison FMR; the second threshold keeps the door's rate at the target as well.
4. Runner-up margin, a documented rule: at least ``ln(100)`` nats (the best person must be 100
   times likelier than the runner-up), raised on a 0.5-nat grid until at most the target fraction
   of the enrolled people's attempts in the simulated doors are accepted as someone else.
   (Raising the margin to turn strangers away was tried and rejected: it cost about 6 % of genuine
   accepts on the development data and did not carry over to held-out people, because a stranger
   who passes the threshold usually leads the runner-up by far.)

The expected FNMR is the in-sample rate at the chosen threshold with its exact interval; held-out
figures come from ``tools/evaluate.py``, which fits on one half of the people and tests on the
other. The calibration file is JSON (see :func:`save_calibration`).
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import random
import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.decide.decision import Policy, decide
from daemon.decide.evidence import Evidence, score_evidence
from daemon.detect.face_quality import scorable
from daemon.embed.voice_backend import VoiceBackend, fit_voice_backend
from daemon.fuse.calibration import CALIBRATION_FILE_SCHEMA, Calibration, read_calibration_file
from daemon.fuse.fusion import FusionParams, cosine
from daemon.offline.fitting import ThresholdFit, fit_calibration, fit_operating_point
from daemon.offline.dataset import (
    SHORT_WORD_SOURCES, Chimera, DataSet, Trial, face_pair_trials, make_chimeras, scan,
    speakers_of, split_halves, voice_trials,
)
from daemon.offline.embeddings import Embeddings, Progress, extract, no_progress
from daemon.offline.metrics import clopper_pearson, rule_of_three_supported, threshold_for_fmr
from daemon.state.atomic import write_atomic
from daemon.state.templates import Person

log = logging.getLogger(__name__)

#: The smallest runner-up margin, in nats: the best person must be 100 times likelier.
MIN_MARGIN = math.log(100.0)
MARGIN_GRID_STEP = 0.5
MARGIN_GRID_MAX = 40.0
#: Probe cut used for the voice calibration and the fused attempts.
ATTEMPT_CUT = "3s"
#: Score given to a comparison whose probe has no embedding (the face was missed): the minimum.
MISSING_COSINE = -1.0


# --------------------------------------------------------------------------------------------
# Trial sets
# --------------------------------------------------------------------------------------------


def face_identities(data: DataSet, only: set[str] | None = None) -> dict[str, dict[str, list[str]]]:
    """Per face source, identity → image keys (restricted to ``source/identity`` names in ``only``)."""
    return {source: {name: files for name, files in ids.items()
                     if only is None or f"{source}/{name}" in only}
            for source, ids in data.faces.items()}


def face_trials(data: DataSet, seed: int, only: set[str] | None = None,
                max_impostors: int = 300_000) -> list[Trial]:
    """Genuine and impostor image pairs within each face source."""
    trials = []
    for source, ids in face_identities(data, only).items():
        if len(ids) >= 2:
            trials += face_pair_trials(ids, source, seed, max_impostors)
    return trials


def sentence_units(emb: Embeddings):
    """Voice units of sentence-length sources (short-word sets excluded)."""
    return [u for u in emb.units if u.source not in SHORT_WORD_SOURCES]


def chimeras_for(data: DataSet, emb: Embeddings, seed: int, face_only: set[str] | None = None,
                 voice_only: set[str] | None = None, voice_enrol_units: int = 1,
                 voice_held_units: int | None = None) -> list[Chimera]:
    """Chimeric people from the faces and sentence-length voices (optionally of one half),
    enrolled from ``voice_enrol_units`` utterances; only speakers with at least
    ``voice_held_units`` + 1 utterances (see :func:`~daemon.offline.dataset.make_chimeras`)."""
    faces = {f"{source}/{name}": [(key, enrolment_usable(emb, key)) for key in files]
             for source, ids in face_identities(data, face_only).items() for name, files in ids.items()}
    held = max(voice_enrol_units, voice_held_units or 0)
    voices = speakers_of(sentence_units(emb), min_seconds=2.0, min_units=held + 1)
    if voice_only is not None:
        voices = {k: v for k, v in voices.items() if k in voice_only}
    return make_chimeras(faces, voices, seed, voice_enrol_units=voice_enrol_units,
                         voice_held_units=voice_held_units)


def door_usable(emb: Embeddings, key: str) -> bool:
    """Whether the door would score this face: found and big enough to align (other quality
    problems inform the calibration; they do not drop the face)."""
    record = emb.faces[key]
    return record.embedding is not None and scorable(record.problems)


def enrolment_usable(emb: Embeddings, key: str) -> bool:
    """Whether enrolment would take this photo: found, and no quality problem at all (an installer
    can take another photo; a person at the door cannot be asked to)."""
    record = emb.faces[key]
    return record.embedding is not None and not record.problems


def halves(data: DataSet, emb: Embeddings, seed: int) -> dict[str, tuple[set, set]]:
    """Face identities and voice speakers each split in two: (calibration half, test half)."""
    faces = [f"{source}/{name}" for source, ids in data.faces.items() for name in ids]
    voices = sorted({u.identity for u in sentence_units(emb)})
    return {"face": split_halves(faces, seed), "voice": split_halves(voices, seed)}


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------


def centroid(embeddings: list[np.ndarray]) -> np.ndarray:
    """Unit-length mean, as :meth:`daemon.state.templates.Person.centroid` makes templates."""
    mean = np.mean(embeddings, axis=0)
    return mean / np.linalg.norm(mean)


def face_scores(trials: list[Trial], emb: Embeddings) -> np.ndarray:
    """Cosine of each face pair; :data:`MISSING_COSINE` where either face was missed."""
    scores = np.empty(len(trials))
    for i, trial in enumerate(trials):
        a, b = emb.face(trial.enrol[0]), emb.face(trial.probe)
        scores[i] = MISSING_COSINE if a is None or b is None else cosine(a, b)
    return scores


def face_usable(trials: list[Trial], emb: Embeddings) -> np.ndarray:
    """Whether the door would score both faces of each pair (:func:`door_usable`)."""
    return np.array([door_usable(emb, t.enrol[0]) and door_usable(emb, t.probe) for t in trials], dtype=bool)


def voice_scores(trials: list[Trial], emb: Embeddings, cut: str = "full",
                 backend: VoiceBackend | None = None, enrol_emb: Embeddings | None = None) -> np.ndarray:
    """Cosine of the enrolment template and the probe cut to ``cut`` (both through ``backend``,
    as :func:`daemon.fuse.fusion.score_candidates` scores them); missing probe → minimum.
    Templates come from ``enrol_emb`` when given (another embedding recipe for enrolment)."""
    enrol_emb = emb if enrol_emb is None else enrol_emb
    templates: dict[tuple[str, ...], np.ndarray] = {}
    scores = np.empty(len(trials))
    for i, trial in enumerate(trials):
        if trial.enrol not in templates:
            template = centroid([enrol_emb.voice(k) for k in trial.enrol])
            templates[trial.enrol] = backend.apply(template) if backend is not None else template
        probe = emb.voice(trial.probe, cut)
        if probe is not None and backend is not None:
            probe = backend.apply(probe)
        scores[i] = MISSING_COSINE if probe is None else cosine(probe, templates[trial.enrol])
    return scores


#: Probe cuts a voice back-end is trained on: the within-speaker scatter then includes what a
#: short utterance does to an embedding.
BACKEND_TRAINING_CUTS = ("1s", "2s", "3s", "full")


def voice_backend_rows(emb: Embeddings, speakers: set[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """(embeddings, speaker of each row): every cut of every sentence-length unit of ``speakers``."""
    rows, labels = [], []
    for unit in sentence_units(emb):
        if speakers is not None and unit.identity not in speakers:
            continue
        for cut in BACKEND_TRAINING_CUTS:
            vector = emb.voice(unit.key, cut)
            if vector is not None:
                rows.append(vector)
                labels.append(unit.identity)
    return np.array(rows, np.float64), labels


def voice_backend_for(emb: Embeddings, speakers: set[str] | None = None) -> VoiceBackend:
    """A back-end fitted on the given speakers, as tools/fit_voice_backend.py fits the shipped one
    on all of them."""
    rows, labels = voice_backend_rows(emb, speakers)
    return fit_voice_backend(rows, labels)


def genuine_impostor(trials: list[Trial], scores: np.ndarray, keep: np.ndarray | None = None):
    """Split scores into (genuine, impostor) arrays, optionally keeping only ``keep``."""
    genuine = np.array([t.genuine for t in trials], dtype=bool)
    keep = np.ones(len(trials), bool) if keep is None else keep
    return scores[genuine & keep], scores[~genuine & keep]


def attempt_input(emb: Embeddings, face_key: str, voice_key: str, cut: str = ATTEMPT_CUT) -> Evidence:
    """The door's evidence for one chimeric attempt: one face image, ``cut`` of one utterance."""
    record = emb.faces[face_key]
    segment = emb.voices[voice_key]
    limit = {"1s": 1.0, "2s": 2.0, "3s": 3.0}.get(cut, math.inf)
    face = record.embedding if door_usable(emb, face_key) else None
    voice = segment.embeddings[cut]
    return Evidence((face,) if face is not None else (), record.quality, tuple(record.problems),
                    voice, min(segment.seconds, limit), () if voice is not None else ("no_speech",))


def enrolled_person(chimera: Chimera, emb: Embeddings) -> Person:
    """The template a door would hold after enrolling a chimera from one image and its enrolment
    utterances."""
    return Person(chimera.name, face=np.stack([emb.face(chimera.face_enrol)]),
                  voice=np.stack([emb.voice(key) for key in chimera.voice_enrolment]))


def _rule_level(min_modality_llr: float | None) -> float:
    """``min_modality_llr``, or the door policy's default when None."""
    return Policy(threshold=0.0, margin=0.0).min_modality_llr if min_modality_llr is None else min_modality_llr


@dataclass
class FusedTrials:
    """Fused verification scores of chimeric attempts, with subjects (the enrolled chimera)."""

    scores: np.ndarray
    genuine: np.ndarray
    subjects: list[str]
    n_missing: int
    missing: np.ndarray  # the attempt lacked a usable face or speech
    face_llr: np.ndarray  # NaN where missing
    voice_llr: np.ndarray
    failures: list[str] = dataclasses.field(default_factory=list)  # the problem reported; "" if scored
    probes: list[str] = dataclasses.field(default_factory=list)  # the chimera making each attempt

    def door_accepts(self, threshold: float, min_modality_llr: float | None = None) -> np.ndarray:
        """Which attempts :func:`decide` would accept with one person enrolled: the fused score
        reaches the threshold and each modality's LLR reaches ``min_modality_llr`` (the policy's
        default when None; ``-inf`` for no such rule)."""
        min_modality_llr = _rule_level(min_modality_llr)
        with np.errstate(invalid="ignore"):
            return ((self.scores >= threshold) & ~self.missing
                    & (self.face_llr >= min_modality_llr) & (self.voice_llr >= min_modality_llr))

    def door_reject_reasons(self, threshold: float, min_modality_llr: float | None = None) -> Counter:
        """Why the genuine attempts :meth:`door_accepts` refuses are refused, each by the first rule
        :func:`decide` applies: ``input`` (no face, a face too small, no speech), ``no_match``
        (fused score under the threshold), ``face_mismatch`` / ``voice_mismatch`` (that modality's
        LLR under ``min_modality_llr``)."""
        min_modality_llr = _rule_level(min_modality_llr)
        reasons: Counter = Counter()
        refused = self.genuine & ~self.door_accepts(threshold, min_modality_llr)
        for i in np.flatnonzero(refused):
            if self.missing[i]:
                reasons["input"] += 1
            elif not self.scores[i] >= threshold:
                reasons["no_match"] += 1
            elif not self.face_llr[i] >= min_modality_llr:
                reasons["face_mismatch"] += 1
            else:
                reasons["voice_mismatch"] += 1
        return reasons

    def door_rates(self, threshold: float, min_modality_llr: float | None = None) -> dict:
        """FMR and FNMR of one-to-one attempts decided as :meth:`door_accepts` decides them."""
        min_modality_llr = _rule_level(min_modality_llr)
        accepted = self.door_accepts(threshold, min_modality_llr)
        impostor = ~self.genuine
        return {"threshold": float(threshold), "min_modality_llr": float(min_modality_llr),
                "fmr": float(np.mean(accepted[impostor])) if impostor.any() else None,
                "fnmr": float(np.mean(~accepted[self.genuine])) if self.genuine.any() else None,
                "n_genuine": int(self.genuine.sum()), "n_impostor": int(impostor.sum())}


def fused_trials(chimeras: list[Chimera], emb: Embeddings, params: FusionParams,
                 cohort: frozenset[str], cut: str = ATTEMPT_CUT) -> FusedTrials:
    """Every attempt of every chimera against itself (genuine) and every compatible other chimera
    (impostor). An attempt the door would deny for its input (no face, a face too small to align,
    no speech) is a failure of its own kind (``failures``, ``missing``); for curves it gets the
    lowest score of the set (a non-match)."""
    people = {c.name: enrolled_person(c, emb) for c in chimeras}
    scores, face_llr, voice_llr, genuine, subjects, missing, failures, probes = [], [], [], [], [], [], [], []
    for probe in chimeras:
        targets = [c for c in chimeras if c is probe or c.compatible(probe, cohort)]
        for face_key, voice_key in probe.attempts:
            attempt = attempt_input(emb, face_key, voice_key, cut)
            is_missing = bool(attempt.problems)
            by_name = {}
            if not is_missing:
                by_name = {c.name: c for c in score_evidence(attempt, [people[t.name] for t in targets], params)}
            for target in targets:
                candidate = by_name.get(target.name)
                scores.append(candidate.fused if candidate else np.nan)
                face_llr.append(candidate.face_llr if candidate else np.nan)
                voice_llr.append(candidate.voice_llr if candidate else np.nan)
                genuine.append(target is probe)
                subjects.append(target.name)
                probes.append(probe.name)
                missing.append(is_missing)
                failures.append(attempt.problems[0] if is_missing else "")
    scores = np.array(scores, dtype=np.float64)
    missing = np.array(missing, dtype=bool)
    if missing.any():
        scores[missing] = np.min(scores[~missing]) if (~missing).any() else 0.0
    return FusedTrials(scores, np.array(genuine, bool), subjects, int(missing.sum()), missing,
                       np.array(face_llr, np.float64), np.array(voice_llr, np.float64), failures, probes)


#: The two halves of an attack on one modality: the enrolled person's own face (a photo, a replayed
#: video) with another person's voice, and another person's face with the enrolled person's own
#: (recorded) voice.
MODALITY_ATTACKS = ("own_face_other_voice", "other_face_own_voice")


def modality_attack_trials(chimeras: list[Chimera], emb: Embeddings, params: FusionParams,
                           cohort: frozenset[str], seed: int, others_per_person: int = 20,
                           cut: str = ATTEMPT_CUT) -> dict[str, FusedTrials]:
    """Attacks that carry one modality of the enrolled person, scored against that person only.

    For each chimera P and up to ``others_per_person`` compatible chimeras Q (seeded choice), P's
    attempts are paired in turn with Q's: ``own_face_other_voice`` takes the face image of P's
    attempt and the utterance of Q's (an attacker holding P's photo who speaks), and
    ``other_face_own_voice`` the reverse (an attacker who plays P's recorded voice). Every trial is
    an impostor trial (``genuine`` all False); :meth:`FusedTrials.door_accepts` says which the door
    would accept. This is what ``min_modality_llr`` is for: under such an attack one modality's
    evidence is as strong as a genuine attempt's, so only the other one can refuse it."""
    rng = random.Random(seed)
    people = {c.name: enrolled_person(c, emb) for c in chimeras}
    found: dict[str, dict[str, list]] = {kind: {"scores": [], "face": [], "voice": [], "missing": [],
                                                "subjects": [], "probes": []} for kind in MODALITY_ATTACKS}
    for person in chimeras:
        others = [c for c in chimeras if c is not person and c.compatible(person, cohort)]
        for other in rng.sample(others, min(others_per_person, len(others))):
            for (own_face, own_voice), (other_face, other_voice) in zip(person.attempts, other.attempts):
                for kind, (face_key, voice_key) in zip(MODALITY_ATTACKS, ((own_face, other_voice),
                                                                           (other_face, own_voice))):
                    attempt = attempt_input(emb, face_key, voice_key, cut)
                    scored = score_evidence(attempt, [people[person.name]], params) if not attempt.problems else []
                    entry = found[kind]
                    entry["scores"].append(scored[0].fused if scored else np.nan)
                    entry["face"].append(scored[0].face_llr if scored else np.nan)
                    entry["voice"].append(scored[0].voice_llr if scored else np.nan)
                    entry["missing"].append(not scored)
                    entry["subjects"].append(person.name)
                    entry["probes"].append(other.name)
    trials = {}
    for kind, entry in found.items():
        scores = np.array(entry["scores"], np.float64)
        missing = np.array(entry["missing"], bool)
        scores[missing] = -np.inf
        trials[kind] = FusedTrials(scores, np.zeros(scores.size, bool), entry["subjects"], int(missing.sum()),
                                   missing, np.array(entry["face"], np.float64),
                                   np.array(entry["voice"], np.float64), probes=entry["probes"])
    return trials


#: Enrolments from several utterances the door's rule is also tested with (the door asks for three).
SEVERAL_UTTERANCES = (2, 3)


def fused_trials_by_enrolment(data: DataSet, emb: Embeddings, params: FusionParams, seed: int,
                              cohort: frozenset[str], face_only: set[str] | None = None,
                              voice_only: set[str] | None = None):
    """For each n of :data:`SEVERAL_UTTERANCES`, yield ``(n, units, chimeras, fused trials)`` of
    chimeras enrolled from n utterances (``units`` = n) and of the same people enrolled from the
    first of them alone (``units`` = 1), on the same attempts: speakers with at least n + 1
    utterances; nothing where there is none."""
    for n in SEVERAL_UTTERANCES:
        for units, held in ((n, None), (1, n)):
            chimeras = chimeras_for(data, emb, seed, face_only, voice_only, voice_enrol_units=units,
                                    voice_held_units=held)
            if chimeras:
                yield n, units, chimeras, fused_trials(chimeras, emb, params, cohort)


def hardest_impostors(fused: FusedTrials, chimeras: list[Chimera], count: int = 5) -> list[dict]:
    """The ``count`` highest-scoring impostor attempts, one per (probe, enrolled) pair: who they were
    (face identity and speaker of each side) and each modality's LLR. A threshold fitted for a low
    FMR sits just above the few worst of these, so they say what the threshold is guarding against
    (a look-alike face, a sound-alike voice, a mislabelled identity in the data)."""
    people = {c.name: c for c in chimeras}
    order = np.argsort(-np.where(fused.genuine | fused.missing, -np.inf, fused.scores), kind="stable")
    found, seen = [], set()
    for index in order:
        if len(found) >= count:
            break
        if fused.genuine[index] or fused.missing[index]:
            continue
        pair = (fused.probes[index], fused.subjects[index])
        if pair in seen:
            continue
        seen.add(pair)
        probe, enrolled = people[pair[0]], people[pair[1]]
        found.append({"fused": float(fused.scores[index]), "face_llr": float(fused.face_llr[index]),
                      "voice_llr": float(fused.voice_llr[index]),
                      "probe": {"face": probe.face_identity, "voice": probe.voice_identity},
                      "enrolled": {"face": enrolled.face_identity, "voice": enrolled.voice_identity}})
    return found


# --------------------------------------------------------------------------------------------
# Open set: N enrolled people, strangers at the door
# --------------------------------------------------------------------------------------------


@dataclass
class OpenSetAttempt:
    """One attempt in front of a gallery: its candidates, and who (if anyone) it really is."""

    candidates: list
    problems: list[str]
    true_name: str | None  # None for a stranger
    gallery_size: int = 0


def open_set_attempts(chimeras: list[Chimera], emb: Embeddings, params: FusionParams,
                      cohort: frozenset[str], gallery_size: int = 10, rounds: int = 5000,
                      seed: int = 1) -> list[OpenSetAttempt]:
    """Simulate ``rounds`` doors: each enrols ``gallery_size`` chimeras compatible with a stranger;
    the stranger's attempts and one enrolled person's attempts are scored against the gallery."""
    rng = random.Random(f"open-set-{seed}")
    people = {c.name: enrolled_person(c, emb) for c in chimeras}
    everyone = list(people.values())
    # A person's scores do not depend on who else is enrolled: score each attempt against everyone
    # once, and keep a gallery's candidates (in the same order) per simulated door.
    scored: dict[tuple[str, str], tuple[list, list[str]]] = {}

    def candidates(face_key: str, voice_key: str, names: set[str]):
        if (face_key, voice_key) not in scored:
            attempt = attempt_input(emb, face_key, voice_key)
            scored[face_key, voice_key] = (score_evidence(attempt, everyone, params), attempt.problems)
        found, problems = scored[face_key, voice_key]
        return [c for c in found if c.name in names], problems

    attempts = []
    for _ in range(rounds):
        stranger = rng.choice(chimeras)
        pool = [c for c in chimeras if c.compatible(stranger, cohort)]
        if len(pool) < 2:
            continue
        gallery = rng.sample(pool, min(gallery_size, len(pool)))
        names = {c.name for c in gallery}
        member = rng.choice(gallery)
        for who, true_name in ((stranger, None), (member, member.name)):
            for face_key, voice_key in who.attempts:
                found, problems = candidates(face_key, voice_key, names)
                attempts.append(OpenSetAttempt(found, problems, true_name, len(gallery)))
    return attempts


def open_set_rates(attempts: list[OpenSetAttempt], threshold: float, margin: float) -> dict:
    """Decide every attempt with :func:`decide` (liveness not required: it is evaluated apart).

    ``far``: strangers accepted as anyone; ``misidentification_rate``: enrolled people accepted
    as someone else; ``false_accept_rate``: both together over all attempts; ``detect_identify_rate``:
    enrolled people accepted as themselves.
    """
    policy = Policy(threshold=threshold, margin=margin, liveness_required=False)
    strangers = accepted_strangers = members = correct = wrong = 0
    for attempt in attempts:
        decision = decide(attempt.candidates, policy, problems=attempt.problems)
        if attempt.true_name is None:
            strangers += 1
            accepted_strangers += decision.accepted
        else:
            members += 1
            correct += decision.accepted and decision.person == attempt.true_name
            wrong += decision.accepted and decision.person != attempt.true_name
    total = strangers + members
    return {"stranger_attempts": strangers, "strangers_accepted": accepted_strangers,
            "far": accepted_strangers / strangers if strangers else None,
            "enrolled_attempts": members, "correct_accepts": correct, "wrong_person_accepts": wrong,
            "misidentification_rate": wrong / members if members else None,
            "detect_identify_rate": correct / members if members else None,
            "false_accept_rate": (accepted_strangers + wrong) / total if total else None,
            "mean_gallery_size": float(np.mean([a.gallery_size for a in attempts])) if attempts else None}


def open_set_threshold(attempts: list[OpenSetAttempt], target: float) -> float:
    """Smallest threshold at which at most ``target`` of the strangers' attempts would pass: the
    threshold for the strangers' *best* fused score over their gallery. Attempts with an input
    problem are denied whatever the threshold; they count with the lowest score."""
    best = [a.candidates[0].fused for a in attempts if a.true_name is None and not a.problems and a.candidates]
    denied = sum(1 for a in attempts if a.true_name is None and (a.problems or not a.candidates))
    if not best:
        return -math.inf
    floor = min(best)
    return threshold_for_fmr(np.array(best + [floor] * denied), target)


def fit_margin(attempts: list[OpenSetAttempt], threshold: float, target: float) -> tuple[float, bool]:
    """The margin rule of the module docstring: (margin, whether the target is met).

    The margin starts at :data:`MIN_MARGIN` and rises in :data:`MARGIN_GRID_STEP` steps until at
    most ``target`` of the enrolled people's attempts are accepted as someone else.
    """
    margin = MIN_MARGIN
    while margin <= MARGIN_GRID_MAX:
        rates = open_set_rates(attempts, threshold, margin)
        if rates["misidentification_rate"] is None or rates["misidentification_rate"] <= target:
            return margin, True
        margin += MARGIN_GRID_STEP
    log.warning("no margin up to %g nats brings the misidentification rate to %g", MARGIN_GRID_MAX, target)
    return MARGIN_GRID_MAX, False


def operating_point_at(genuine, impostor, threshold: float, target_fmr: float,
                       alpha: float = 0.05) -> ThresholdFit:
    """Observed FMR and FNMR (with exact intervals) at a given threshold."""
    genuine, impostor = np.asarray(genuine), np.asarray(impostor)
    false_matches = int(np.count_nonzero(impostor >= threshold))
    false_non_matches = int(np.count_nonzero(genuine < threshold))
    return ThresholdFit(
        threshold=float(threshold), target_fmr=float(target_fmr), fmr=false_matches / impostor.size,
        fmr_ci=clopper_pearson(false_matches, impostor.size, alpha),
        fnmr=false_non_matches / genuine.size, fnmr_ci=clopper_pearson(false_non_matches, genuine.size, alpha),
        n_genuine=int(genuine.size), n_impostor=int(impostor.size),
        supported=rule_of_three_supported(impostor.size, target_fmr), alpha=float(alpha))


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


@dataclass
class SystemFit:
    """Everything fitted on one set of people."""

    face: Calibration
    voice: Calibration
    params: FusionParams
    operating_point: object  # daemon.offline.fitting.ThresholdFit
    margin: float
    margin_meets_target: bool
    open_set: dict
    fused: FusedTrials
    n_face: tuple[int, int]
    n_voice: tuple[int, int]
    verification_threshold: float
    open_set_threshold: float
    chimeras: list = dataclasses.field(default_factory=list)


def fit_system(data: DataSet, emb: Embeddings, target_fmr: float, seed: int,
               face_only: set[str] | None = None, voice_only: set[str] | None = None,
               gallery_size: int = 10, rounds: int = 5000, backend: VoiceBackend | None = None) -> SystemFit:
    """Fit both calibrations, the threshold and the margin on the given people (all by default).

    ``backend``: the voice back-end to score with (default: one fitted on ``voice_only``'s speakers,
    so that an evaluation never scores speakers its back-end was fitted on)."""
    if backend is None:
        backend = voice_backend_for(emb, voice_only)
    trials = face_trials(data, seed, face_only)
    usable = face_usable(trials, emb)
    face_genuine, face_impostor = genuine_impostor(trials, face_scores(trials, emb), usable)
    face = fit_calibration(face_genuine, face_impostor)
    units = sentence_units(emb)
    vtrials = voice_trials(units, 1, seed, data.cohort_sources(), only_speakers=voice_only)
    voice_genuine, voice_impostor = genuine_impostor(vtrials, voice_scores(vtrials, emb, ATTEMPT_CUT, backend))
    voice = fit_calibration(voice_genuine, voice_impostor)
    params = FusionParams(face, voice, voice_backend=backend)
    chimeras = chimeras_for(data, emb, seed, face_only, voice_only)
    cohort = data.cohort_sources()
    fused = fused_trials(chimeras, emb, params, cohort)
    genuine, impostor = fused.scores[fused.genuine], fused.scores[~fused.genuine]
    verification = fit_operating_point(genuine, impostor, target_fmr)
    attempts = open_set_attempts(chimeras, emb, params, cohort, gallery_size, rounds, seed)
    open_set = open_set_threshold(attempts, target_fmr)
    point = operating_point_at(genuine, impostor, max(verification.threshold, open_set), target_fmr)
    margin, met = fit_margin(attempts, point.threshold, target_fmr)
    log.info("fitted: face a=%.3f b=%.3f, voice a=%.3f b=%.3f, threshold %.3f (verification %.3f, "
             "open set %.3f), margin %.2f", face.a, face.b, voice.a, voice.b, point.threshold,
             verification.threshold, open_set, margin)
    return SystemFit(face, voice, params, point, margin, met, open_set_rates(attempts, point.threshold, margin),
                     fused, (face_genuine.size, face_impostor.size), (voice_genuine.size, voice_impostor.size),
                     verification.threshold, open_set, chimeras)


def calibrate(pipeline, data_dir, target_fmr: float = 1e-4, seed: int = 1, cache_dir: Path | None = None,
              progress: Progress = no_progress, gallery_size: int = 10) -> dict:
    """Fit the calibration file's contents on every person of ``data_dir``; log the expected
    operating point and return the file's dictionary (see :func:`save_calibration`)."""
    data = scan(data_dir).without_voices(pipeline.speaker_encoder.trained_on)
    emb = extract(pipeline, data, cache_dir, progress)
    fit = fit_system(data, emb, target_fmr, seed, gallery_size=gallery_size, backend=pipeline.voice_backend)
    point = fit.operating_point
    result = {
        "schema": CALIBRATION_FILE_SCHEMA, "models": pipeline.models_fingerprint,
        "face": {"a": fit.face.a, "b": fit.face.b}, "voice": {"a": fit.voice.a, "b": fit.voice.b},
        "threshold": point.threshold, "margin": fit.margin, "target_fmr": float(target_fmr),
        "expected_fnmr": point.fnmr, "fnmr_ci": [point.fnmr_ci[0], point.fnmr_ci[1]],
        "observed_fmr": point.fmr, "supported": point.supported,
        "verification_threshold": fit.verification_threshold, "open_set_threshold": fit.open_set_threshold,
        "door_one_to_one": {**fit.fused.door_rates(point.threshold),
                            "false_reject_reasons": dict(sorted(
                                fit.fused.door_reject_reasons(point.threshold).items()))},
        "hardest_impostors": hardest_impostors(fit.fused, fit.chimeras),
        "n_genuine": point.n_genuine, "n_impostor": point.n_impostor,
        "open_set": {"gallery_size": gallery_size, **fit.open_set,
                     "far_supported_at_target": rule_of_three_supported(fit.open_set["stranger_attempts"],
                                                                         target_fmr)},
        "fitted_on": {"face": {"genuine": fit.n_face[0], "impostor": fit.n_face[1]},
                      "voice": {"genuine": fit.n_voice[0], "impostor": fit.n_voice[1],
                                "probe": ATTEMPT_CUT},
                      "chimeras": len({s for s in fit.fused.subjects}), "seed": seed},
        "data": str(Path(data_dir).resolve()),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    by_enrolment: dict[str, dict] = {}
    for n, units, chimeras, fused in fused_trials_by_enrolment(data, emb, fit.params, seed,
                                                               data.cohort_sources()):
        rates = fused.door_rates(point.threshold)
        errors = int(round((rates["fnmr"] or 0.0) * rates["n_genuine"]))
        rates["fnmr_ci"] = list(clopper_pearson(errors, rates["n_genuine"])) if rates["n_genuine"] else None
        rates["people"] = len(chimeras)
        rates["people_by_voice_source"] = dict(sorted(Counter(c.voice_source for c in chimeras).items()))
        by_enrolment.setdefault(str(n), {})[f"enrolled_from_{units}"] = rates
    result["door_one_to_one_by_enrol_utterances"] = by_enrolment
    for n, entry in by_enrolment.items():
        several, alone = entry.get(f"enrolled_from_{n}"), entry.get("enrolled_from_1")
        if several and alone and several["n_genuine"]:
            log.info("people enrolled from %s utterances (%d): door FNMR %.4f, FMR %.2g; the same people "
                     "from one: FNMR %.4f, FMR %.2g", n, several["people"], several["fnmr"],
                     several["fmr"] or 0.0, alone["fnmr"], alone["fmr"] or 0.0)
    log.info("expected operating point: FMR <= %g -> FNMR %.4f (95%% CI %.4f-%.4f) on %d genuine / "
             "%d impostor chimeric attempts%s", target_fmr, point.fnmr, point.fnmr_ci[0], point.fnmr_ci[1],
             point.n_genuine, point.n_impostor,
             "" if point.supported else " (too few impostor trials to support this FMR)")
    return result


#: How ``avid calibrate`` names the reasons of :meth:`FusedTrials.door_reject_reasons`.
REASON_TEXT = {"voice_mismatch": "with a voice that alone points elsewhere (decision.min_modality_llr)",
               "face_mismatch": "with a face that alone points elsewhere (decision.min_modality_llr)",
               "no_match": "under the threshold", "input": "without a usable face or speech"}


def operating_point_lines(result: dict) -> list[str]:
    """What an installer reads after ``avid calibrate``: the threshold and the false rejects to
    expect, for people enrolled from one utterance and from several."""
    ci = result.get("fnmr_ci")
    interval = f" (95 % CI {100 * ci[0]:.1f}-{100 * ci[1]:.1f} %)" if ci else ""
    lines = [f"threshold {result['threshold']:.2f} nats for a false match rate of at most "
             f"{result['target_fmr']:g} ({result['n_impostor']} impostor attempts"
             f"{'' if result.get('supported') else ': too few to support it'})",
             f"expected false rejects {100 * result['expected_fnmr']:.1f} %{interval} for people enrolled "
             "from one photo and one utterance"]
    door = result.get("door_one_to_one") or {}
    reasons = door.get("false_reject_reasons")
    if reasons and door.get("n_genuine"):
        lines.append(f"the door's rule refuses {100 * door['fnmr']:.1f} % of them: " + ", ".join(
            f"{count} {REASON_TEXT.get(reason, reason)}" for reason, count in
            sorted(reasons.items(), key=lambda kv: -kv[1])) + f" (of {door['n_genuine']} attempts)")
    for n, entry in sorted(result.get("door_one_to_one_by_enrol_utterances", {}).items()):
        several, alone = entry.get(f"enrolled_from_{n}"), entry.get("enrolled_from_1")
        if several and alone and several["n_genuine"]:
            lines.append(f"people enrolled from {n} utterances: {100 * several['fnmr']:.1f} % false rejects "
                         f"at this threshold, against {100 * alone['fnmr']:.1f} % for the same "
                         f"{several['people']} people enrolled from one")
    return lines


def save_calibration(path, result: dict) -> None:
    """Write a calibration file atomically (JSON)."""
    write_atomic(path, (json.dumps(result, indent=2, sort_keys=True) + "\n").encode(), mode=0o644)


def load_calibration(path) -> dict:
    """Read a calibration file with the door's own reader; :class:`ConfigError` if it is invalid."""
    return read_calibration_file(path).model_dump(by_alias=True, exclude_unset=True)


def fusion_params(result: dict, voice_backend: VoiceBackend | None = None) -> FusionParams:
    """The fusion parameters of a calibration file's dictionary (with the pipeline's back-end)."""
    return FusionParams(Calibration(float(result["face"]["a"]), float(result["face"]["b"])),
                        Calibration(float(result["voice"]["a"]), float(result["voice"]["b"])),
                        voice_backend=voice_backend)


def main(argv: list[str] | None = None) -> int:
    """``python -m daemon.offline.calibrate DATA_DIR --out FILE``: fit and write a calibration file."""
    import argparse

    from daemon.pipeline import Pipeline

    parser = argparse.ArgumentParser(description="fit avid's score calibration on a data folder")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="calibration file to write")
    parser.add_argument("--target-fmr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None, help="embedding cache folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = calibrate(Pipeline(models_dir=args.models_dir), args.data_dir, args.target_fmr, args.seed,
                       args.cache)
    save_calibration(args.out, result)
    print(json.dumps({k: result[k] for k in ("threshold", "margin", "target_fmr", "expected_fnmr",
                                             "fnmr_ci", "supported", "n_genuine", "n_impostor")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
