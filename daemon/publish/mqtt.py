"""Reports a door to Home Assistant over MQTT (paho-mqtt 2.x, its own network thread).

Publishing is best-effort and never waits: ``client.publish`` only appends to paho's bounded queue,
so a broker that is down or slow cannot delay a decision or the lock. paho reconnects with back-off;
the broker going away is logged once, and once when it is back. Network callbacks never touch the
relay: an authorised remote command is handed to the main loop through ``submit``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from daemon.errors import ConfigError
from daemon.publish import discovery
from daemon.publish.discovery import Topics
from daemon.publish.remote import COMMAND_MAX_AGE_SECONDS, RateLimit, RemoteCommand, check_code, parse_command

log = logging.getLogger(__name__)

#: systemd credential holding the broker password (LoadCredential=avid-mqtt-password:...).
PASSWORD_CREDENTIAL = "avid-mqtt-password"
#: Messages paho keeps for a broker that is away; beyond that, publishing drops them.
MAX_QUEUED_MESSAGES = 64
#: Reconnect back-off, seconds (paho doubles from min to max).
RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS = 1, 8
#: How long close() waits for ``offline`` to reach the broker, and for paho's thread (shutdown only).
CLOSE_WAIT_SECONDS = 1.0
#: TCP connect and TLS handshake limit on paho's thread.
CONNECT_TIMEOUT_SECONDS = 3.0


def read_password(mqtt_config) -> str | None:
    """The broker password from ``password_file``, else the systemd credential, else None."""
    path = mqtt_config.password_file
    if path is None:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        candidate = Path(directory) / PASSWORD_CREDENTIAL if directory else None
        if candidate is None or not candidate.is_file():
            return None
        path = candidate
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"mqtt.password_file {path} cannot be read: {exc}") from exc


class MqttBridge:
    """Publishes a door's states and events; optionally takes remote lock commands.

    :param mqtt_config: the ``mqtt`` section (:class:`~daemon.config.MqttConfig`), enabled.
    :param lock_config: the ``lock`` section (``unlock_seconds`` of a remote grant).
    :param clock: monotonic clock for the rate limit and the age of commands.
    :param submit: called on the network thread with each authorised :class:`RemoteCommand`; it
        must only queue it for the main thread, which then calls :meth:`execute`.
    :param door_contact: a door contact is wired (adds the door sensor and the alarms).
    """

    def __init__(self, mqtt_config, lock_config, clock: Callable[[], float] = time.monotonic,
                 submit: Callable[[RemoteCommand], None] | None = None, door_contact: bool = False):
        from daemon.config import mqtt_problems

        if not mqtt_config.enabled:
            raise ConfigError("mqtt.url is empty: MQTT is off")
        problems = mqtt_problems(mqtt_config.model_dump(mode="json"))
        if problems:
            raise ConfigError("; ".join(f"{path}: {message}" for path, message in problems))
        if mqtt_config.remote_unlock and submit is None:
            raise ConfigError("remote unlock needs a main loop to hand commands to")
        self.config = mqtt_config
        self._unlock_seconds = lock_config.unlock_seconds
        self._clock = clock
        self._submit = submit
        self._door_contact = door_contact
        self.topics = Topics(mqtt_config.base_topic, mqtt_config.discovery_prefix, mqtt_config.door_id)
        self._name = mqtt_config.name or mqtt_config.door_id
        self._rate = RateLimit(mqtt_config.remote_unlock_per_minute, clock)
        self._guard = threading.Lock()
        # Last published value of each retained state topic, republished on (re)connect.
        self._states: dict[str, str] = {}
        self._alarms = {name: False for name in discovery.ALARMS}
        self._connected = False
        self._reported_down = False
        self._started = self._closed = False
        self._client = self._make_client(mqtt_config)

    # --- set-up ----------------------------------------------------------------------------
    def _make_client(self, config):
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        parts = urlsplit(config.url)
        transport = "unix" if parts.scheme == "unix" else "tcp"
        # Clean session: the broker keeps nothing for avid while it is away, so no command can
        # wait there and be acted on later.
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"avid-{config.door_id}",
                             clean_session=True, protocol=paho.MQTTv311, transport=transport)
        client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        client.connect_timeout = CONNECT_TIMEOUT_SECONDS
        client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)
        username = config.username or config.door_id
        client.username_pw_set(username, read_password(config))
        if parts.scheme == "mqtts":
            try:
                client.tls_set(ca_certs=str(config.ca_file),
                               certfile=str(config.cert_file) if config.cert_file else None,
                               keyfile=str(config.key_file) if config.key_file else None)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"mqtt TLS files cannot be used: {exc}") from exc
        client.will_set(self.topics.availability, discovery.OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        if parts.scheme == "unix":
            self._address, self._port = parts.path, 1
        else:
            self._address = parts.hostname
            self._port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        return client

    def start(self) -> "MqttBridge":
        """Start paho's network thread and connect in the background; never waits for the broker."""
        if self._started:
            return self
        self._started = True
        log.info("MQTT: reporting door %s to %s (remote unlock %s)", self.config.door_id, self.config.url,
                 "ON" if self.config.remote_unlock else "off")
        self._client.connect_async(self._address, self._port, keepalive=self.config.keepalive_seconds)
        self._client.loop_start()
        return self

    def close(self) -> None:
        """Publish ``offline``, disconnect and stop the network thread; idempotent.

        A clean disconnect discards the last will, so ``offline`` is published here first.
        """
        with self._guard:
            if self._closed:
                return
            self._closed = True
            connected = self._connected
        if self._started:
            info = self._client.publish(self.topics.availability, discovery.OFFLINE, qos=1, retain=True)
            if connected:
                try:
                    info.wait_for_publish(timeout=CLOSE_WAIT_SECONDS)
                except (RuntimeError, ValueError):
                    pass  # not connected any more: the broker publishes the will instead
            self._client.disconnect()
            # paho's loop_stop() joins its thread without a limit, and that thread may sit in a
            # connect() to a broker that does not answer: wait a bounded time (it is a daemon thread).
            stopper = threading.Thread(target=self._client.loop_stop, name="avid-mqtt-stop", daemon=True)
            stopper.start()
            stopper.join(timeout=CLOSE_WAIT_SECONDS)

    # --- events from the door (any thread; never blocks) -------------------------------------
    def on_decision(self, event) -> None:
        """Report a decided attempt (a loop ``DecisionEvent``) as an access event."""
        self._event(discovery.decision_payload(event))

    def on_lock(self, locked: bool) -> None:
        """The relay was de-energised (``locked``) or energised."""
        self._state(self.topics.lock_state, discovery.LOCKED if locked else discovery.UNLOCKED)

    def on_door(self, is_open: bool) -> None:
        """The door contact opened or closed; closing clears the door alarms."""
        self._state(self.topics.door_state, discovery.DOOR_OPEN if is_open else discovery.DOOR_CLOSED)
        if not is_open:
            for name in discovery.ALARMS:
                self.on_alarm(name, False)

    def on_alarm(self, name: str, active: bool) -> None:
        """An alarm (``door_forced``, ``door_held_open``) was raised or cleared."""
        with self._guard:
            if name not in self._alarms or self._alarms[name] == active:
                return
            self._alarms[name] = active
            payload = discovery.dumps(self._alarms)
        self._state(self.topics.alarm_state, payload)
        if active:
            self._event(discovery.simple_event(name))

    def on_exit_request(self) -> None:
        """The request-to-exit button was pressed."""
        self._event(discovery.simple_event("request_to_exit"))

    def on_lockout(self, state: dict) -> None:
        """The lockout state: ``locked_out``, ``consecutive_failures``, ``remaining_seconds``."""
        self._state(self.topics.lockout_state, discovery.dumps(state))

    # --- remote commands -----------------------------------------------------------------------
    def execute(self, command: RemoteCommand, lock) -> bool:
        """Carry out an authorised command; **main thread only** (it drives the relay).

        Returns True when the relay was energised or de-energised as asked.
        """
        age = self._clock() - command.received_at
        if age > COMMAND_MAX_AGE_SECONDS:
            log.warning("remote %s from %s dropped: %.1f s old (never acted on late)",
                        command.action, command.source, age)
            return False
        if command.action == "lock":
            lock.relock("remote lock")
            log.info("remote lock from %s: relay de-energised", command.source)
            return True
        lock.grant()
        log.warning("event=remote_unlock relay energised for %.1f s by a remote command from %s",
                    self._unlock_seconds, command.source)
        self._event(discovery.simple_event("remote_unlock", source=command.source,
                                           unlock_seconds=self._unlock_seconds))
        return True

    def _on_message(self, client, userdata, message) -> None:
        if message.topic == self.topics.ha_status:
            if message.payload == discovery.ONLINE.encode():
                log.info("MQTT: Home Assistant announced itself: republishing discovery and states")
                self._publish_all()
            return
        if message.topic != self.topics.lock_set or not self.config.remote_unlock:
            return
        source = f"MQTT topic {message.topic} on {self.config.url}"
        if message.retain:
            # A retained command was stored by the broker at some earlier time: never act on it,
            # and clear it so that it cannot come back.
            if message.payload:
                log.warning("remote command ignored: it was delivered as retained (%s); clearing it", source)
                client.publish(self.topics.lock_set, b"", qos=1, retain=True)
            return
        if not message.payload:
            return  # the echo of a cleared retained command
        action, code = parse_command(message.payload)
        if action is None:
            log.warning("remote command ignored: not OPEN, UNLOCK or LOCK (%s)", source)
            return
        received_at = self._clock()
        if action == "unlock":
            # The limit counts refused codes too, so guessing a code is as slow as unlocking.
            if not self._rate.allow():
                log.warning("remote unlock refused: more than %d per minute (%s)",
                            self.config.remote_unlock_per_minute, source)
                return
            if self.config.remote_unlock_code_hash and not check_code(code, self.config.remote_unlock_code_hash):
                log.warning("remote unlock refused: %s code (%s)", "wrong" if code else "no", source)
                return
        self._submit(RemoteCommand(action, source, received_at))

    # --- connection ----------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._went_down(f"connection refused: {reason_code}")
            return
        with self._guard:
            self._connected = True
            was_down, self._reported_down = self._reported_down, False
        if was_down:
            log.info("MQTT broker %s is back", self.config.url)
        else:
            log.info("MQTT: connected to %s", self.config.url)
        client.subscribe(self.topics.ha_status, qos=1)
        if self.config.remote_unlock:
            client.subscribe(self.topics.lock_set, qos=1)
        self._publish_all()

    def _on_connect_fail(self, client, userdata) -> None:
        self._went_down("cannot connect")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._guard:
            self._connected = False
            closing = self._closed
        if not closing:
            self._went_down(f"disconnected: {reason_code}")

    def _went_down(self, why: str) -> None:
        with self._guard:
            self._connected = False
            if self._reported_down:
                return
            self._reported_down = True
        log.warning("MQTT broker %s unavailable: %s (decisions and the lock are not affected; "
                    "retrying in the background)", self.config.url, why)

    # --- publishing ------------------------------------------------------------------------------
    def discovery_payload(self) -> dict:
        """This door's device discovery message."""
        return discovery.discovery_payload(
            self.topics, self._name, remote_unlock=self.config.remote_unlock,
            code_required=bool(self.config.remote_unlock_code_hash), door_contact=self._door_contact)

    def _publish_all(self) -> None:
        self._publish(self.topics.discovery, discovery.dumps(self.discovery_payload()), retain=True)
        self._publish(self.topics.availability, discovery.ONLINE, retain=True)
        with self._guard:
            states = dict(self._states)
        for topic, payload in states.items():
            self._publish(topic, payload, retain=True)

    def _state(self, topic: str, payload: str) -> None:
        with self._guard:
            if self._closed:
                return
            self._states[topic] = payload
        self._publish(topic, payload, retain=True)

    def _event(self, payload: dict) -> None:
        with self._guard:
            if self._closed:
                return
        self._publish(self.topics.event, discovery.dumps(payload), retain=False)

    def _publish(self, topic: str, payload: str, retain: bool) -> None:
        if not self._started:
            return
        try:
            self._client.publish(topic, payload, qos=1, retain=retain)
        except Exception as exc:  # best-effort: reporting must never break the door
            log.debug("MQTT publish to %s failed: %s", topic, exc)
