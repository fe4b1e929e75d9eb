"""A real Mosquitto broker for tests, started from a generated config, and a recording client.

The broker listens on a Unix socket and on a free loopback TCP port with TLS (a test CA from
``trustme``); anonymous clients are refused, users and passwords come from a generated password
file (``mosquitto_passwd``) and every topic is governed by a generated ACL, the one
docs/home-assistant.md recommends: one user per door, one for Home Assistant.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

DOOR = "front"
PASSWORDS = {DOOR: "door-secret", "homeassistant": "ha-secret", "intruder": "intruder-secret"}
ACL = """\
# Home Assistant: reads every door, sends lock commands, owns its discovery prefix.
user homeassistant
topic readwrite avid/#
topic readwrite homeassistant/#

# A client that may log in but has no business with the doors.
user intruder
topic read avid/#

# Every door (user name = door_id): its own subtree, its own discovery message, HA's birth message.
pattern readwrite avid/%u/#
pattern write homeassistant/device/avid_%u/config
pattern read homeassistant/status
"""


def mosquitto_binary() -> str:
    """The broker installed by ``tools/bootstrap.sh test`` (Debian's mosquitto)."""
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if found is None:
        raise RuntimeError("mosquitto is not installed: run 'bash tools/bootstrap.sh test'")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """One Mosquitto process; ``stop()``/``start()`` keep the same addresses and files."""

    def __init__(self, directory: Path):
        import trustme

        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket_path = self.dir / "mosquitto.sock"
        self.tls_port = free_port()
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = self.dir / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        server.private_key_and_cert_chain_pem.write_to_path(str(self.dir / "server.pem"))
        password_file = self.dir / "passwd"
        password_file.touch(mode=0o600)
        for user, password in PASSWORDS.items():
            subprocess.run(["mosquitto_passwd", "-b", str(password_file), user, password],
                           check=True, capture_output=True, timeout=30)
        (self.dir / "acl").write_text(ACL)
        self.log_file = self.dir / "mosquitto.log"
        lines = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {password_file}",
            f"acl_file {self.dir / 'acl'}",
            "persistence false",
            f"log_dest file {self.log_file}",
            "log_type all",
            f"listener 0 {self.socket_path}",
            f"listener {self.tls_port} 127.0.0.1",
            f"cafile {self.ca_file}",
            f"certfile {self.dir / 'server.pem'}",
            f"keyfile {self.dir / 'server.pem'}",
        ]
        if os.geteuid() == 0:
            # As root Mosquitto would switch to the 'mosquitto' user, which cannot read these files.
            lines.insert(0, f"user {pwd.getpwuid(os.getuid()).pw_name}")
        self.config_file = self.dir / "mosquitto.conf"
        self.config_file.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def start(self, timeout: float = 10.0) -> "Broker":
        self.socket_path.unlink(missing_ok=True)
        self.process = subprocess.Popen([mosquitto_binary(), "-c", str(self.config_file)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.process.stderr.read().decode()}\n"
                                   f"{self.log_file.read_text() if self.log_file.exists() else ''}")
            if self.socket_path.exists() and _accepts(self.tls_port):
                return self
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool

    def json(self):
        return json.loads(self.payload)


class Recorder:
    """A client (Home Assistant's user by default) that records everything it receives."""

    def __init__(self, broker: Broker, user: str = "homeassistant", topics=("avid/#", "homeassistant/#")):
        self.messages: list[Message] = []
        self._changed = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{user}-{time.monotonic_ns()}",
                                  transport="unix")
        self.client.username_pw_set(user, PASSWORDS[user])
        subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_connect = lambda client, *args: client.subscribe([(t, 1) for t in topics])
        self.client.connect(str(broker.socket_path), 1)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("recorder could not subscribe")

    def _on_message(self, client, userdata, message) -> None:
        with self._changed:
            self.messages.append(Message(message.topic, bytes(message.payload), bool(message.retain)))
            self._changed.notify_all()

    def on(self, topic: str) -> list[Message]:
        with self._changed:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "a message"):
        """Wait (bounded) until ``predicate(messages)`` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = predicate(list(self.messages))
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = "\n".join(f"  {m.topic} {m.payload[:120]!r} retain={m.retain}" for m in self.messages)
                    raise AssertionError(f"timed out waiting for {what}; received:\n{seen}")
                self._changed.wait(min(left, 0.2))

    def publish(self, topic: str, payload, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
