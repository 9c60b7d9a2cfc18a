"""spikewire runtime: pipeline, chip emulators, readout, sinks, telemetry, config, CLI."""

__version__ = "0.1.0"
