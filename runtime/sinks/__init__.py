"""Sinks: where decisions and telemetry go (MQTT, JSONL file, stdout)."""
