"""The challenge in ``avid demo``: the same door with a prompt device refuses a replayed video of an
enrolled person, because the recording cannot answer digits it could not know.

The prompts are drawn exactly as at a real door (:mod:`secrets`, random times): nothing is chosen
for the bundled recordings, which were made years before and so cannot say the digits when asked.
The demo has no live person to answer; an answer that is let in is shown by
``tests/test_challenge_door.py``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from daemon.challenge.present import Presenter
from daemon.challenge.runner import ChallengeRunner, params_from_config

#: The replayed clip: alice (GRID s1), accepted in the first part of the demo without a challenge.
CLIP = "s1_bbaf4p"
REPEATS = 4


class ConsolePresenter(Presenter):
    """Prints each prompt (the demo's stand-in for a display at the door)."""

    name = "console"

    def __init__(self, start: float, clock: Callable[[], float] = time.monotonic):
        self._start, self._clock = start, clock

    def show(self, digit: str, index: int, total: int) -> None:
        print(f"  t={self._clock() - self._start:5.1f}s  door asks: say {digit} "
              f"(prompt {index + 1}/{total})", flush=True)


def run_challenge_demo(pipeline, base_config, data: Path, lock_factory,
                       clock: Callable[[], float] = time.monotonic) -> tuple[int, list]:
    """Replay alice's clip (looped, as a phone would play it) at a door with a challenge; returns
    (0 when it is refused with ``challenge_failed``, else 1; the decision events). ``clock``: a
    :class:`~daemon.capture.media_clock.MediaClock` for ``avid demo --fast`` (prompts, deadlines and
    frame ages in media time), else the monotonic clock."""
    from daemon.actuate.lock import open_lock
    from daemon.service import door
    from daemon.service.loop import CaptureLoop

    video, wav = data / CLIP / "video.mpg", data / CLIP / "audio_16k.wav"
    config = base_config.model_copy(update={
        "camera": base_config.camera.model_copy(update={"path": video, "loop": True}),
        "microphone": base_config.microphone.model_copy(update={"paths": [wav] * REPEATS,
                                                                "gap_seconds": 0.0}),
        "prompt": base_config.prompt.model_copy(update={"backend": "log"}),
        "attempt": base_config.attempt.model_copy(update={"cooldown_seconds": 30.0}),
    })
    print("\nwith a prompt device (prompt.backend: display or speaker at a real door), the door asks "
          f"{config.challenge.digits} random digits one at a time, drawn from the OS's secrets at "
          "random times,\nand each must be answered in time by the face in front of the camera, in "
          "the person's own voice.\nNothing is chosen for the bundled recording: it was made long "
          "before and cannot know the digits (nor can it say them: GRID has no recordings of alice\n"
          "saying digits, so she is enrolled without them here; the reason printed is the first check "
          f"the replay fails).\n\nreplaying alice's clip ({CLIP}) on a loop, as a "
          "phone held up to the camera would:\n", flush=True)
    lock = open_lock(config.lock, pin_factory=lock_factory, clock=clock)
    start = clock()
    events = []

    def show(event):
        d = event.decision
        events.append(event)
        print(f"  t={event.decided_at - start:5.1f}s  {d.decision.upper():6} person={d.person or '-'} "
              f"reason={d.reason} ({d.details.get('challenge', '')})", flush=True)

    try:
        the_door = door.build_door(config, clock=clock, pipeline=pipeline)
        the_door.challenge = ChallengeRunner(ConsolePresenter(start, clock), params_from_config(config),
                                             clock=clock)
        frames, audio = door.source_factories(config, clock=clock)
        loop = CaptureLoop(the_door, lock, frames, audio, clock=clock, on_decision=show)
        loop.run(duration_s=the_door.challenge.params.digits * 2.7 + 6.0)
    finally:
        lock.close()
    refused = len(events) >= 1 and events[0].decision.reason == "challenge_failed"
    print("\nREPLAY REFUSED: the recording could not answer the challenge." if refused else
          "\nDEMO FAILED: the replayed recording was not refused by the challenge.")
    return (0 if refused else 1), events
