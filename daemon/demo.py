"""``avid demo``: the real pipeline on bundled recordings, with gpiozero's MockFactory for the relay.

Bundled clips (``daemon/demo_data/``) come from the GRID audio-visual corpus (Cooke, Barker,
Cunningham & Shao, 2006; CC BY 4.0): real people filmed saying short sentences, with their own
audio. The demo enrols two of them from files (one from two clips, one from one clip), then replays
through the capture loop, in real time, attempts by:

1. the first enrolled person, on a clip not used for enrolment → accepted;
2. the second enrolled person, replaying the clip they enrolled from (GRID has one clip of them)
   → accepted;
3. a stranger (a third GRID speaker) → denied;
4. a photo attack: a still frame of the first person held up to the camera while a recording of
   their voice plays → denied by the liveness check;
5. the first person again, on another new clip → accepted;

and then, at the same door with a prompt device (daemon/challenge/demo.py), a replayed video of the
first person, which cannot answer the random challenge → denied (challenge_failed).

It prints each decision and the relay's state timeline, and exits 1 if any outcome differs.
With ``fast=True`` (``avid demo --fast``) the replay runs on a
:class:`~daemon.capture.media_clock.MediaClock`: as fast as the machine computes, with every time
judged in media time, so the decisions are those of the real-time demo.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from daemon.capture.audio import read_wav, wav_seconds
from daemon.config import Config

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent / "demo_data"
GAP_SECONDS = 2.5
FPS = 15.0

ENROL = {"alice": ["s1_bbaf2n", "s1_bbaf3s"], "bob": ["gridX_brbk7n_brbk7n"]}
#: (label, clip, still photo?, expected decision, expected person)
ATTEMPTS = [
    ("alice, new clip", "s1_bbaf4p", False, "accept", "alice"),
    ("bob, his enrolment clip", "gridX_brbk7n_brbk7n", False, "accept", "bob"),
    ("stranger", "gridX_lwbsza_lwbsza", False, "deny", None),
    ("photo of alice + her recorded voice", "s1_bbaf5a", True, "deny", None),
    ("alice, another new clip", "s1_bbaf5a", False, "accept", "alice"),
]


def frame_at(video: Path, seconds: float) -> np.ndarray:
    """The frame of a video at a given time."""
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_MSEC, seconds * 1000)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise RuntimeError(f"cannot read a frame of {video}")
    return frame


def write_photo_attack(clip: str, out: Path) -> Path:
    """A video of a still photo in front of a camera (sensor noise, no motion) as long as the clip."""
    still = frame_at(DATA / clip / "video.mpg", 1.0)
    seconds = read_wav(DATA / clip / "audio_16k.wav").size / 16000
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (still.shape[1], still.shape[0]))
    rng = np.random.default_rng(5)
    for _ in range(int(seconds * 25)):
        noise = rng.normal(0, 2.0, still.shape)
        writer.write(np.clip(still + noise, 0, 255).astype(np.uint8))
    writer.release()
    return out


def demo_config(state_dir: Path, videos: list[Path], wavs: list[Path]) -> Config:
    """The demo's configuration: replay sources in real time, mock GPIO, a private state folder."""
    return Config.model_validate({
        "state": {"directory": str(state_dir)},
        "camera": {"backend": "replay", "path": str(videos[0]), "fps": FPS, "realtime": True},
        "microphone": {"backend": "replay", "paths": [str(w) for w in wavs], "realtime": True,
                       "gap_seconds": GAP_SECONDS},
        "attempt": {"cooldown_seconds": 1.0, "timeout_seconds": 6.0},
        "lock": {"pin_factory": "mock", "unlock_seconds": 2.0},
    })


def run_demo(fast: bool = False) -> int:
    """Run the demo; return 0 when every outcome is the expected one.

    :param fast: replay as fast as the machine computes (media time) instead of in real time.
    """
    import os

    from gpiozero.pins.mock import MockFactory

    from daemon.actuate.lock import open_lock
    from daemon.capture.frames import ReplayFrames
    from daemon.capture.media_clock import MediaClock
    from daemon.service import door
    from daemon.service.enrolment import enrol_from_files
    from daemon.service.loop import CaptureLoop
    from daemon.state.templates import Person

    with tempfile.TemporaryDirectory(prefix="avid-demo-") as tmp:
        tmp = Path(tmp)
        os.environ.pop("AVID_STATE_DIR", None)
        videos, wavs = [], []
        for i, (_, clip, still, _, _) in enumerate(ATTEMPTS):
            videos.append(write_photo_attack(clip, tmp / f"photo{i}.avi") if still else DATA / clip / "video.mpg")
            wavs.append(DATA / clip / "audio_16k.wav")
        config = demo_config(tmp / "state", videos, wavs)
        print("avid demo: real models, real recordings (GRID corpus, CC BY 4.0), mock GPIO relay\n")
        pipeline = door.make_pipeline(config)
        store = door.open_store(config, pipeline.models_fingerprint, create_key=True)
        for name, clips in ENROL.items():
            faces = []
            for clip in clips:
                path = tmp / f"{name}_{clip}.jpg"
                cv2.imwrite(str(path), frame_at(DATA / clip / "video.mpg", 0.5))
                faces.append(path)
            voices = [DATA / clip / "audio_16k.wav" for clip in clips]
            face, voice = enrol_from_files(pipeline, faces, voices)
            store.save(Person(name, face, voice))
            print(f"enrolled {name} from {len(clips)} clip(s): {', '.join(clips)}")
        if fast:
            print(f"\nreplaying {len(ATTEMPTS)} attempts as fast as this machine computes "
                  "(times are media time)...\n")
        else:
            print(f"\nreplaying {len(ATTEMPTS)} attempts in real time (about {len(ATTEMPTS) * 5.5:.0f} s)...\n")

        factory = MockFactory()
        # In fast mode the loop, the lock and both replays share one media clock.
        clock = MediaClock() if fast else time.monotonic
        start = clock()
        lock = open_lock(config.lock, pin_factory=factory, clock=clock)
        results = []

        def show(event):
            d = event.decision
            label = ATTEMPTS[len(results)][0] if len(results) < len(ATTEMPTS) else "?"
            results.append(event)
            print(f"  t={event.decided_at - start:5.1f}s  attempt {len(results)} ({label}): "
                  f"{d.decision.upper():6} person={d.person or '-'} reason={d.reason} "
                  f"face={_fmt(d.face)} voice={_fmt(d.voice)} fused={_fmt(d.fused)} "
                  f"liveness={_fmt(d.liveness)} latency={event.latency_ms:.0f} ms", flush=True)

        durations = [wav_seconds(w) for w in wavs]
        _, audio = door.source_factories(config, clock=clock)
        frames = lambda: ReplayFrames(videos, fps=FPS, realtime=True, gap_seconds=GAP_SECONDS,  # noqa: E731
                                      durations=durations, clock=clock)
        try:
            loop = CaptureLoop(door.build_door(config, clock=clock, pipeline=pipeline), lock, frames, audio,
                               clock=clock, on_decision=show, stop_at_end_of_replay=True)
            loop.run(duration_s=len(ATTEMPTS) * 8 + 10)
            if not fast:
                time.sleep(config.lock.unlock_seconds + 0.2)
        finally:
            lock.close()
        from daemon.challenge.demo import run_challenge_demo
        challenge_code, _ = run_challenge_demo(pipeline, config, DATA, factory,
                                               clock=MediaClock() if fast else time.monotonic)
        pin = factory.pin(config.lock.relay_pin)
        # gpiozero's MockPin stamps changes with the wall clock, not with the injected one.
        print("\nrelay timeline (GPIO%d; %s):" % (config.lock.relay_pin, "wall-clock t" if fast else
                                                  "t from the start of the replay"))
        # MockPin records the time since the previous change; add them up.
        elapsed = 0.0
        for state in pin.states:
            elapsed += state.timestamp
            print(f"  t={elapsed:6.2f}s  {'ENERGISED (unlocked)' if state.state else 'de-energised (locked)'}")
        return _check(results, pin) or challenge_code


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _check(results, pin) -> int:
    problems = []
    if len(results) != len(ATTEMPTS):
        problems.append(f"{len(results)} decisions for {len(ATTEMPTS)} attempts")
    for (label, _, _, want, who), event in zip(ATTEMPTS, results):
        d = event.decision
        if d.decision != want or d.person != who:
            problems.append(f"{label}: {d.decision}/{d.person} ({d.reason}), expected {want}/{who}")
    grants = sum(1 for s in pin.states if s.state)
    expected = sum(1 for a in ATTEMPTS if a[3] == "accept")
    if grants != expected:
        problems.append(f"relay energised {grants} times, expected {expected}")
    if pin.state:
        problems.append("relay left energised")
    if problems:
        print("\nDEMO FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(f"\nDEMO OK: {expected} accepted, {len(ATTEMPTS) - expected} denied, relay energised only for "
          "the accepted attempts and de-energised at the end.")
    return 0
