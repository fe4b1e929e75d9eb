"""``avid run``: the door daemon under systemd (``Type=notify``, health-gated watchdog)."""

from __future__ import annotations

import logging
import signal

from daemon.config import Config
from daemon.service.door import build_door, source_factories
from daemon.service.loop import CaptureLoop

log = logging.getLogger(__name__)


def run_daemon(config: Config) -> int:
    """Open the lock and the door contacts, build the door, serve until a stop signal."""
    from daemon.actuate.door_io import open_door_monitor
    from daemon.actuate.lock import make_pin_factory, open_lock
    from daemon.service.sdnotify import Notifier
    from daemon.service.watchdog import HealthGate

    notifier = Notifier()
    factory = make_pin_factory(config.lock.pin_factory)
    lock = open_lock(config.lock, pin_factory=factory)
    monitor = door = None
    try:
        monitor = open_door_monitor(config.door, lock, factory)
        health = HealthGate(notifier, max_frame_age_s=config.watchdog.max_frame_age_seconds,
                            max_inference_age_s=config.watchdog.max_inference_age_seconds)
        door = build_door(config)
        open_frames, open_audio = source_factories(config)
        loop = CaptureLoop(door, lock, open_frames, open_audio, health=health, notifier=notifier,
                           stop_at_end_of_replay=config.camera.backend == "replay" and not config.camera.loop)

        def on_signal(signum, frame):
            log.info("signal %d: stopping", signum)
            notifier.stopping()
            loop.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        notifier.ready()
        notifier.status("running")
        loop.run()
    finally:
        if door is not None and getattr(door, "challenge", None) is not None:
            door.challenge.close()  # the prompt device (a display is cleared)
        if monitor is not None:
            monitor.close()
        lock.close()
        notifier.stopping()
        notifier.close()
    return 0
