"""Reporting a door to the outside: Home Assistant over MQTT (optional, off by default).

:class:`~daemon.publish.mqtt.MqttBridge` is the interface; :func:`~daemon.publish.wiring.attach`
connects it to a running door.
"""

from daemon.publish.mqtt import MqttBridge
from daemon.publish.remote import RemoteCommand

__all__ = ["MqttBridge", "RemoteCommand"]
