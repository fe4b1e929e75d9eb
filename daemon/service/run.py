"""``avid run``: the door daemon under systemd (``Type=notify``, health-gated watchdog)."""

from __future__ import annotations

import logging

from daemon.config import Config
from daemon.service.door import build_door, source_factories
from daemon.service.loop import CaptureLoop

log = logging.getLogger(__name__)


def run_daemon(config: Config) -> int:
    """Open the lock and the door contacts, build the door, serve until a stop signal."""
    from daemon.actuate.door_io import open_door_monitor
    from daemon.actuate.lock import make_pin_factory, open_lock
    from daemon.control.server import start_control_server
    from daemon.service.admin import LoopDoorAdmin
    from daemon.service.sdnotify import Notifier
    from daemon.service.signals import install_stop_handlers
    from daemon.service.watchdog import HealthGate

    notifier = Notifier()
    factory = make_pin_factory(config.lock.pin_factory)
    lock = open_lock(config.lock, pin_factory=factory)
    loop = None

    def stop():
        notifier.stopping()
        if loop is not None:
            loop.stop()

    # Installed before the slow start-up, so that no signal can end the process the default way
    # (every terminating signal relocks first).
    handlers = install_stop_handlers(lock, stop)
    monitor = bridge = control = door = None
    try:
        monitor = open_door_monitor(config.door, lock, factory)
        health = HealthGate(notifier, max_frame_age_s=config.watchdog.max_frame_age_seconds,
                            max_inference_age_s=config.watchdog.max_inference_age_seconds)
        door = build_door(config)
        admin = LoopDoorAdmin(door, lock, monitor)
        open_frames, open_audio = admin.tap(*source_factories(config))
        loop = CaptureLoop(door, lock, open_frames, open_audio, health=health, notifier=notifier,
                           stop_at_end_of_replay=config.camera.backend == "replay" and not config.camera.loop)
        admin.loop = loop
        loop.add_decision_listener(admin.record_decision)
        control = start_control_server(config.control, admin)
        if config.mqtt.enabled:  # paho is imported only for a door that reports to MQTT
            from daemon.publish.wiring import attach as attach_mqtt

            bridge = attach_mqtt(loop, lock, monitor, config)

        if not handlers.received:
            notifier.ready()
            notifier.status("running")
            loop.run()
    finally:
        if control is not None:
            control.close()
        if door is not None and getattr(door, "challenge", None) is not None:
            door.challenge.close()  # the prompt device (a display is cleared)
        if monitor is not None:
            monitor.close()
        lock.close()
        status = handlers.finish()  # the door is locked: later signals are ignored until exit
        if bridge is not None:
            bridge.close()  # after the lock: its last state is LOCKED, then offline
        notifier.stopping()
        notifier.close()
    return status
