"""MQTT: the event bus and the state to a broker, commands from it, and Home Assistant discovery."""
from .bridge import MqttBridge

__all__ = ["MqttBridge"]
