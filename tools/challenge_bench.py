"""Benchmark of the challenge: decision latency after the last answer, and the recogniser's CPU.

``python -m tools.challenge_bench [--attempts 8] [--json out.json]``

1. **Latency through the real capture loop.** A person answering every prompt (GRID s1's face,
   resting between answers and speaking during them; a free-spoken-digit speaker's own recordings of
   the prompted digits 0.45 s after each prompt: chimeric, as in tests/test_challenge_door.py) is
   written to a video and a WAV and replayed in real time through the daemon's replay sources, with
   the ``log`` prompt device and a seeded challenge per attempt. Reported: p50/p90 of the time from
   the VAD end-of-utterance event after the last answer to the lock command (the same measure as
   tools/bench.py's ``decision_latency_ms``), and the same plus the VAD hangover (the silence the
   VAD waits for), which is the time from the end of the last answer.
2. **Recogniser CPU per attempt** (``judge_challenge``: answer detection, MFCC, DTW against the
   given people's digits), offline on free-spoken-digit attempts, with 1, 3 and 10 people (the
   door checks only the best-scoring candidate, so 1 is what it pays; the loop figure
   ``judge_cpu_ms_in_loop`` is what is left at the end after the early recognition).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
import wave
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from daemon.capture.audio import room_tone  # noqa: E402
from daemon.challenge import ChallengeParams, DigitTemplates, new_challenge  # noqa: E402
from tools.scenes import ANSWERING_CLIP, FPS, answering_scene, clip_audio, clip_frames, spoken  # noqa: E402
from daemon.challenge.verify import judge_challenge, template_content  # noqa: E402

log = logging.getLogger("challenge_bench")


def write_scene(folder: Path, video: list[np.ndarray], audio: np.ndarray) -> tuple[Path, Path]:
    """The scene as an MJPG video at 15 fps and a 16 kHz WAV."""
    folder.mkdir(parents=True, exist_ok=True)
    video_path, wav_path = folder / "scene.avi", folder / "scene.wav"
    height, width = video[0].shape[:2]
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (width, height))
    for frame in video:
        writer.write(frame)
    writer.release()
    with wave.open(str(wav_path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return video_path, wav_path


def enrol(pipeline, config, speaker: str = "theo") -> None:
    """The chimeric resident: GRID s1's face, ``speaker``'s voice and digits (two takes, in the
    room's background)."""
    from daemon.service import door
    from daemon.service.enrolment import enrol_from_files
    from daemon.state.templates import Person
    work = config.state_dir
    work.mkdir(parents=True, exist_ok=True)
    photo = work / "face.jpg"
    cv2.imwrite(str(photo), clip_frames("s1_bbaf2n")[8])
    sentence = np.concatenate([spoken(speaker, d, n) for n in (0, 1) for d in "0123456789"])
    _, voice_file = write_scene(work / "enrol", [clip_frames("s1_bbaf2n")[8]], sentence)
    face, voice = enrol_from_files(pipeline, [photo], [voice_file])
    tone = room_tone(clip_audio(ANSWERING_CLIP), 16000)
    digits = DigitTemplates.from_recordings(
        (d, spoken(speaker, d, n) + tone[:spoken(speaker, d, n).size]) for d in "0123456789"
        for n in (0, 1))
    store = door.open_store(config, pipeline.models_fingerprint, create_key=True)
    store.save(Person(speaker, face, voice, digits=digits.to_arrays()))


def loop_latency(attempts: int) -> dict:
    """Latency after the last answer through the real loop (see the module doc)."""
    from gpiozero.pins.mock import MockFactory

    from daemon.actuate.lock import open_lock
    from daemon.config import Config
    from daemon.service import door
    from daemon.service.loop import CaptureLoop

    events, judge_cpu = [], []
    with tempfile.TemporaryDirectory(prefix="avid-challenge-bench-") as tmp:
        tmp = Path(tmp)
        pipeline = None
        for seed in range(attempts):
            video_path, wav_path = write_scene(tmp / f"scene{seed}", *answering_scene(seed))
            config = Config.model_validate({
                "state": {"directory": str(tmp / "state")},
                "camera": {"backend": "replay", "path": str(video_path), "fps": FPS, "realtime": True},
                "microphone": {"backend": "replay", "paths": [str(wav_path)], "realtime": True},
                "attempt": {"cooldown_seconds": 1.0},
                "lock": {"pin_factory": "mock", "unlock_seconds": 0.5},
                "lockout": {"max_consecutive_failures": 100},
                "prompt": {"backend": "log"}})
            if pipeline is None:
                pipeline = door.make_pipeline(config)
                enrol(pipeline, config)
            lock = open_lock(config.lock, pin_factory=MockFactory())
            try:
                the_door = door.build_door(config, pipeline=pipeline)
                runner = the_door.challenge
                runner._rng = random.Random(seed)
                judge = runner.judge

                def timed(*args, _judge=judge, **kwargs):
                    started = time.process_time()
                    try:
                        return _judge(*args, **kwargs)
                    finally:
                        judge_cpu.append(time.process_time() - started)
                runner.judge = timed
                frames, audio = door.source_factories(config)
                loop = CaptureLoop(the_door, lock, frames, audio, on_decision=events.append,
                                   stop_at_end_of_replay=True)
                loop.run(duration_s=20.0)
            finally:
                lock.close()
        hangover_ms = config.vad.end_frames * config.microphone.block_ms
    # The scene's face stays after the decision: a second, silent attempt follows (abandoned).
    spoken_events = [e for e in events if e.speech_ended_at is not None]
    latencies = np.array([e.latency_ms for e in spoken_events])
    reasons = {r: sum(1 for e in spoken_events if e.decision.reason == r)
               for r in {e.decision.reason for e in spoken_events}}
    failures = dict(Counter(e.decision.details.get("challenge", "") for e in spoken_events
                            if e.decision.reason == "challenge_failed"))
    return {"attempts": attempts, "decisions": len(spoken_events), "reasons": reasons,
            "challenge_failures": failures,
            "vad_end_to_lock_ms": {"p50": float(np.median(latencies)), "p90": float(np.percentile(latencies, 90)),
                                   "n": int(latencies.size)} if latencies.size else None,
            "vad_hangover_ms": hangover_ms,
            "last_answer_end_to_lock_ms": {"p50": float(np.median(latencies)) + hangover_ms,
                                           "p90": float(np.percentile(latencies, 90)) + hangover_ms}
            if latencies.size else None,
            "judge_cpu_ms_in_loop": {"p50": 1000 * float(np.median(judge_cpu)),
                                     "p90": 1000 * float(np.percentile(judge_cpu, 90))} if judge_cpu else None}


def recogniser_cpu(trials: int = 20) -> dict:
    """CPU milliseconds of ``judge_challenge`` per attempt with 1, 3 and 10 enrolled people."""
    params = ChallengeParams()
    speakers = ("george", "lucas", "theo")
    templates = {s: DigitTemplates.from_recordings((d, spoken(s, d, n)) for d in "0123456789"
                                                   for n in (0, 1)) for s in speakers}
    rng, noise = random.Random(1), np.random.default_rng(1)
    out = {}
    for people in (1, 3, 10):
        enrolled = {f"{speakers[i % 3]}{i}": templates[speakers[i % 3]] for i in range(people)}
        cpu, passed = [], 0
        for _ in range(trials):
            challenge = new_challenge(params, rng=rng)
            speaker = rng.choice(speakers[:people])
            length = challenge.ends_at(params) + 1.0
            audio = noise.normal(0, 1e-3, int(length * 16000)).astype(np.float32)
            t = np.arange(0, length, 1 / FPS)
            mouth = np.full(t.size, 0.02)
            for i, prompt in enumerate(challenge.prompts):
                take = spoken(speaker, prompt.digit, 2 + i)
                start = prompt.at + rng.uniform(0.3, 0.8)
                at = int(start * 16000)
                audio[at:at + take.size] += take[:audio.size - at]
                mouth[(t >= start) & (t <= start + take.size / 16000)] = 0.2
            started = time.process_time()
            result = judge_challenge(challenge, audio, 0.0, t, mouth,
                                     template_content(enrolled, params), list(enrolled), params)
            cpu.append(time.process_time() - started)
            passed += result.passed
        out[str(people)] = {"p50_ms": 1000 * float(np.median(cpu)),
                            "p90_ms": 1000 * float(np.percentile(cpu, 90)), "n": trials,
                            "passed": passed}
    return out


def main(argv=None) -> int:
    """Command line: see the module doc."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=8, help="attempts through the real loop")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = {"recogniser_cpu_per_attempt": recogniser_cpu(),
              "loop": loop_latency(args.attempts)}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
