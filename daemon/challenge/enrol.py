"""Enrolment of the challenge's material: a person's own recordings of the digits 0-9, from files or
captured live at the door (twice each: two takes halve the content check's errors, see
:data:`daemon.challenge.CHOICE`)."""

from __future__ import annotations

import logging
import re
import secrets
import time
from pathlib import Path
from typing import Callable

import numpy as np

from daemon.challenge.digits import DIGITS, DigitTemplates, trim
from daemon.challenge.verify import levels_db, speech_runs
from daemon.errors import EnrolmentError

log = logging.getLogger(__name__)

#: A digit file is named after its digit: ``7.wav``, ``7_1.wav``, ``7-second-take.wav``.
DIGIT_FILE = re.compile(r"^(\d)(?:[_-].*)?\.wav$", re.IGNORECASE)
TAKES = 2
#: A spoken digit lasts at least this long and at most this long (seconds, silence trimmed).
MIN_DIGIT_S, MAX_DIGIT_S = 0.12, 1.5
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def live_digits_wanted(config, args) -> bool:
    """Whether ``avid enroll`` captures the challenge's digits live: when asked (``--live-digits``),
    and by default for a live enrolment (``--live``) without digit files on a door with a prompt
    device, whose challenge refuses anyone enrolled without them."""
    if getattr(args, "live_digits", False):
        return True
    return bool(getattr(args, "live", False) and not getattr(args, "digits", None)
                and config.prompt.challenge_on)


#: What ``avid enroll`` prints when a person of a challenge door is enrolled without digits.
NO_DIGITS_WARNING = ("warning: no digit recordings (--digits or --live-digits): this person cannot answer "
                     "the challenge and will be refused")


def spoken_part(samples: np.ndarray) -> np.ndarray | None:
    """The spoken digit in a recording (its longest speech run, silence trimmed), or None."""
    # Quiet padding: a file cut tightly around the word has no silence to measure the floor on.
    pad = np.random.default_rng(0).normal(0.0, 1e-5, 4000).astype(np.float32)
    samples = np.concatenate([pad, np.asarray(samples, np.float32).reshape(-1), pad])
    levels = levels_db(samples)
    runs = speech_runs(levels)
    if not runs:
        return None
    first, _, last = max(runs, key=lambda run: run[2] - run[0])
    piece = trim(samples[max(0, first - 5) * 160:(last + 6) * 160])
    seconds = piece.size / 16000
    return piece if MIN_DIGIT_S <= seconds <= MAX_DIGIT_S else None


def digit_files(paths: list[Path]) -> tuple[list[tuple[str, Path]], list[str]]:
    """The digit recordings named on a command line (files, or folders of ``*.wav``):
    ``([(digit, path), ...], problems)``; a file must be named after its digit (``3_1.wav``)."""
    found, problems = [], []
    for path in paths:
        path = Path(path)
        files = sorted(path.glob("*.wav")) if path.is_dir() else [path]
        if not files:
            problems.append(f"{path}: no .wav files")
        for file in files:
            match = DIGIT_FILE.match(file.name)
            if match:
                found.append((match.group(1), file))
            else:
                problems.append(f"{file}: the name must start with the digit spoken (e.g. 7_1.wav)")
    return found, problems


def digits_from_recordings(recordings: list[tuple[str, str, Callable[[], np.ndarray]]],
                           min_takes: int = 1, problems: list[str] | None = None) -> DigitTemplates:
    """Digit templates from ``(digit, label, read)`` recordings, ``read()`` giving the 16 kHz
    samples (it may raise). Raises :class:`~daemon.errors.EnrolmentError` naming every unusable
    recording (by its label), every digit with fewer than ``min_takes`` usable ones, and any
    ``problems`` found before."""
    problems = list(problems or [])
    usable = []
    for digit, label, read in recordings:
        try:
            piece = spoken_part(read())
        except Exception as exc:
            problems.append(f"{label}: {exc}")
            continue
        if piece is None:
            problems.append(f"{label}: no single spoken digit found ({MIN_DIGIT_S:g}-{MAX_DIGIT_S:g} s "
                            "of speech)")
            continue
        usable.append((digit, piece))
    counts = {d: sum(1 for digit, _ in usable if digit == d) for d in DIGITS}
    short = [d for d in DIGITS if counts[d] < min_takes]
    if short:
        problems.append(f"digit(s) {', '.join(short)}: fewer than {min_takes} usable recording(s)")
    if problems:
        raise EnrolmentError.refused(problems, "digit enrolment")
    return DigitTemplates.from_recordings(usable)


def digits_from_files(paths: list[Path], min_takes: int = 1) -> DigitTemplates:
    """Digit templates from WAV files (or folders of them) named after their digit (``3_1.wav``).

    Raises :class:`~daemon.errors.EnrolmentError` naming every unusable file and every digit with
    fewer than ``min_takes`` usable recordings.
    """
    from daemon.capture.audio import read_wav
    found, problems = digit_files(paths)
    return digits_from_recordings([(digit, str(path), lambda path=path: read_wav(path)) for digit, path in found],
                                  min_takes, problems)


def digits_live(record: Callable[[float], np.ndarray], show: Callable[[str], None] = print,
                takes: int = TAKES, seconds: float = 2.0, attempts_per_digit: int = 3,
                pause: Callable[[float], None] = time.sleep) -> DigitTemplates:
    """Guided capture of the digits: each digit ``takes`` times in a random order, asked for with
    ``show`` (the console, and the prompt device when there is one); ``record(seconds)`` returns
    that long of the microphone (16 kHz float). A take without one clear spoken digit is asked for
    again, up to ``attempts_per_digit`` times; raises :class:`EnrolmentError` if one never comes."""
    order = [d for d in DIGITS for _ in range(takes)]
    rng = secrets.SystemRandom()
    rng.shuffle(order)
    recordings = []
    for n, digit in enumerate(order, 1):
        for _ in range(attempts_per_digit):
            show(f"[{n}/{len(order)}] say \"{WORDS[int(digit)]}\" ({digit}) once, now")
            piece = spoken_part(record(seconds))
            if piece is not None:
                recordings.append((digit, piece))
                break
            show("  no single clear word heard; again")
            pause(0.3)
        else:
            raise EnrolmentError(f"no usable recording of the digit {digit}: check the microphone")
    return DigitTemplates.from_recordings(recordings)


def microphone_recorder(config) -> Callable[[float], np.ndarray]:
    """``record(seconds)`` from the configured microphone (bounded waits: a read that gives
    nothing for ``read_timeout_seconds`` ends the recording)."""
    from daemon.capture.audio import open_audio_source

    def record(seconds: float) -> np.ndarray:
        source = open_audio_source(config.microphone).start()
        blocks, deadline = [], time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                item = source.read(config.microphone.read_timeout_seconds)
                if item is None:
                    break
                blocks.append(np.asarray(item.data, np.float32).reshape(-1))
        finally:
            source.close()
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return record
