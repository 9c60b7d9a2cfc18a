"""MQTT transport: the only package that imports aiomqtt or amqtt.

- ``runtime.mqtt.url``: parse ``mqtt://`` / ``mqtts://`` URLs (pure, no MQTT library).
- ``runtime.mqtt.sink``: ``MqttSink``, the ``Sink`` that publishes the MQTT contract.
- ``runtime.mqtt.sub``: ``subscribe_and_print``, behind ``spikewire sub``.
- ``runtime.mqtt.broker``: ``EmbeddedBroker`` (amqtt), for the zero-config demo only.
- ``runtime.mqtt.connection``: settings and failure reports shared by sink and sub.

Only the URL parser is re-exported here, so configuration code can validate a URL
without loading the MQTT client (about 90 ms) or the embedded broker (about 130 ms).
"""

from runtime.mqtt.url import BrokerAddress, parse_broker_url

__all__ = ["BrokerAddress", "parse_broker_url"]
