"""The ``spikewire`` command.

Exit codes (stable, for scripts and systemd):

    0  success
    1  runtime failure (a pipeline crashed, a broker could not be reached for `sub`)
    2  usage or configuration error (bad flag, bad config field, missing labels column)
    3  bad input data (unreadable, corrupt or truncated recording; replay skipped files)
    4  model error (unloadable bundle, unsupported NIR node, does not fit the chip)
    5  device error (no PortAudio, no such sound device)
    130 interrupted (Ctrl-C during a command that is not the daemon)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from runtime import __version__

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG, EXIT_INPUT, EXIT_MODEL, EXIT_DEVICE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130


def _speed(value: str) -> float | str:
    if value == "max":
        return "max"
    try:
        speed = float(value)
    except ValueError as exc:
        msg = f"--speed must be 'max' or a positive number, got {value!r}"
        raise argparse.ArgumentTypeError(msg) from exc
    if not speed > 0:
        msg = f"--speed must be positive, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return speed


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        msg = f"expected on or off, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return value == "on"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="spikewire", description="Sensor streams to spikes, through emulated neuromorphic chips, to MQTT."
    )
    ap.add_argument("--version", action="version", version=f"spikewire {__version__}")
    ap.add_argument(
        "--log-level",
        default=os.environ.get("SPIKEWIRE_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon (without CONFIG: the built-in demo)")
    run.add_argument("config", nargs="?", type=Path, help="TOML configuration")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")

    rp = sub.add_parser("replay", help="replay recordings through a model, with scores and figures")
    rp.add_argument("paths", nargs="+", type=Path, help="files or folders of recordings")
    rp.add_argument("--model", required=True, help="zoo name or bundle path")
    rp.add_argument("--chip", default=None, help="chip profile name or TOML file (default: the model's)")
    rp.add_argument("--speed", type=_speed, default="max", help="'max' (unpaced) or a factor of real time")
    rp.add_argument("--mqtt", default=None, metavar="URL", help="also publish to this broker")
    rp.add_argument("--labels", type=Path, default=None, help="CSV with a 'file' column relative to its folder")
    rp.add_argument("--label-column", default="label")
    rp.add_argument("--mismatch", type=_on_off, default=None, help="on/off (default: the chip profile's)")
    rp.add_argument("--seed", type=int, default=0, help="mismatch seed")
    rp.add_argument("--readout", choices=["auto", "stream", "utterance", "window"], default="auto")
    rp.add_argument("--device", default="replay", help="device id in MQTT topics")
    rp.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    md = sub.add_parser("models", help="list, show or check model bundles")
    md_sub = md.add_subparsers(dest="action", required=True)
    md_sub.add_parser("list")
    show = md_sub.add_parser("show")
    show.add_argument("model")
    check = md_sub.add_parser("check", help="compile for a chip and report resources; non-zero if it does not fit")
    check.add_argument("model")
    check.add_argument("--chip", default=None)
    check.add_argument("--strict", action="store_true", help="soft limits (model size) are errors")
    for p in (md_sub.choices["list"], show, check):
        p.add_argument("--json", action="store_true")

    dv = sub.add_parser("devices", help="list sound input devices")
    dv.add_argument("--json", action="store_true")

    bn = sub.add_parser("bench", help="benchmarks: chip workload W1 and the whole pipeline")
    bn.add_argument("--json", action="store_true")
    bn.add_argument("--data", type=Path, default=None, help="FSDD folder for the pipeline benchmark")
    bn.add_argument("--mqtt", default=None, metavar="URL", help="broker for the pipeline benchmark")
    bn.add_argument("--seconds", type=float, default=60.0, help="W1 stream length")
    bn.add_argument("--live", type=float, default=20.0, help="seconds of the paced live run (0: skip)")
    bn.add_argument("--repeat", type=int, default=5, help="W1 runs; the median is reported")

    sb = sub.add_parser("sub", help="pretty-print what a broker carries under the prefix")
    sb.add_argument("url", nargs="?", default="mqtt://127.0.0.1:1883")
    sb.add_argument("--prefix", default="spikewire")
    sb.add_argument("--device", default=None)
    sb.add_argument("--json", action="store_true", help="raw JSON lines")
    sb.add_argument("--count", type=int, default=None, help="exit after this many messages")
    sb.add_argument("--timeout", type=float, default=None, help="exit after this many seconds")

    sub.add_parser("schema", help="print the JSON Schemas of the MQTT payloads")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        code = _exit_code(exc)
        if code == EXIT_RUNTIME:
            logging.getLogger("spikewire").exception("failed")
        else:
            print(f"spikewire: {exc}", file=sys.stderr)
        return code


def _exit_code(exc: BaseException) -> int:
    from models.network import ModelError
    from runtime.chips.compile import CompileError
    from runtime.config import ConfigError
    from sensors.blocks import InputError

    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    if isinstance(exc, InputError):
        return EXIT_INPUT
    if isinstance(exc, ModelError | CompileError):
        return EXIT_MODEL
    if type(exc).__name__ == "DeviceError":
        return EXIT_DEVICE
    return EXIT_RUNTIME


def _dispatch(args: argparse.Namespace) -> int:
    handler = {
        "run": _cmd_run,
        "replay": _cmd_replay,
        "models": _cmd_models,
        "devices": _cmd_devices,
        "bench": _cmd_bench,
        "sub": _cmd_sub,
        "schema": _cmd_schema,
    }[args.command]
    return handler(args)


def _cmd_run(args: argparse.Namespace) -> int:
    from runtime.config import load_settings
    from runtime.daemon import run_daemon

    settings = load_settings(args.config)
    return asyncio.run(run_daemon(settings, demo=args.config is None, duration_s=args.duration))


def _cmd_replay(args: argparse.Namespace) -> int:
    from runtime.replay import ReplayOptions, run_replay

    opts = ReplayOptions(
        paths=args.paths,
        model=args.model,
        chip=args.chip,
        speed=args.speed,
        mqtt_url=args.mqtt,
        labels_csv=args.labels,
        label_column=args.label_column,
        mismatch=args.mismatch,
        seed=args.seed,
        readout_mode=args.readout,
        device=args.device,
        progress=sys.stderr.isatty(),
    )
    summary = run_replay(opts)
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    for err in summary["errors"]:
        print(f"spikewire: skipped {err}", file=sys.stderr)
    return EXIT_INPUT if summary["skipped_files"] else EXIT_OK


def _print_summary(s: dict[str, Any]) -> None:
    def fmt(v: Any, spec: str = ".3g") -> str:
        return "n/a" if v is None else format(v, spec)

    lat = s["latency_ms"]
    print(f"model {s['model']} on {s['chip']} (mismatch {'on' if s['mismatch'] else 'off'})")
    print(f"  files {s['files']} (skipped {s['skipped_files']}), decisions {s['decisions']}, scored {s['scored']}")
    print(f"  accuracy {fmt(s['accuracy'], '.2%')}")
    print(f"  {s['stream_s']:.1f} s of input in {s['wall_s']:.2f} s: {fmt(s['rtf'], '.0f')}x real time")
    print(f"  host latency p50 {fmt(lat['p50'])} ms, p95 {fmt(lat['p95'])} ms, p99 {fmt(lat['p99'])} ms")
    print(f"  chip: {fmt(s['power_mw_mean'])} mW mean, {fmt(s['energy_uj_per_decision'])} uJ per decision")


def _cmd_models(args: argparse.Namespace) -> int:
    from models.bundle import load_bundle, zoo_names

    if args.action == "list":
        names = zoo_names()
        if args.json:
            print(json.dumps(names))
        else:
            for name in names:
                b = load_bundle(name)
                m = b.manifest.model
                print(f"{name:16} {m.version:8} {m.modality:6} {m.target_chip:10} {m.description}")
        return EXIT_OK
    if args.action == "show":
        b = load_bundle(args.model)
        data = b.manifest.model_dump(mode="json")
        data["path"] = str(b.path)
        data["network"] = {
            "inputs": b.network.n_inputs,
            "populations": {p.name: p.size for p in b.network.populations},
            "projections": {
                p.name: f"{p.source} -> {p.target} {p.weight.shape[0]}x{p.weight.shape[1]}"
                for p in b.network.projections
            },
        }
        print(json.dumps(data, indent=None if args.json else 2))
        return EXIT_OK
    from runtime.build import prepare
    from runtime.chips.compile import CompileError

    try:
        prep = prepare(args.model, args.chip, mismatch=None, seed=0, strict=args.strict)
    except CompileError as exc:
        if args.json:
            print(json.dumps({"fits": False, "problems": exc.problems}))
        else:
            print(str(exc), file=sys.stderr)
        return EXIT_MODEL
    report = prep.compiled.report
    if args.json:
        print(
            json.dumps(
                {
                    "fits": True,
                    "chip": report.chip,
                    "neurons": report.neurons,
                    "synapses": report.synapses,
                    "model_bytes": report.model_bytes,
                    "warnings": list(report.warnings),
                }
            )
        )
    else:
        print("\n".join(report.lines()))
    return EXIT_OK


def _cmd_devices(args: argparse.Namespace) -> int:
    from sensors.audio.mic import list_input_devices

    devices = list_input_devices()
    if args.json:
        print(json.dumps([dataclasses.asdict(d) for d in devices]))
    else:
        if not devices:
            print("no input devices")
        for d in devices:
            print(f"{d.index:3}  {d.name}  ({d.hostapi}, {d.max_input_channels} ch, {d.default_rate_hz:.0f} Hz)")
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    from runtime.bench import run_bench

    result = run_bench(
        seconds=args.seconds,
        data=args.data,
        mqtt_url=args.mqtt,
        progress=not args.json,
        live_s=args.live,
        repeats=args.repeat,
    )
    print(json.dumps(result, indent=None if args.json else 2))
    return EXIT_OK


def _cmd_sub(args: argparse.Namespace) -> int:
    from runtime.config import MqttConfig
    from runtime.mqtt.sub import subscribe_and_print

    cfg = MqttConfig(url=args.url, prefix=args.prefix)
    return asyncio.run(subscribe_and_print(cfg, args.device, sys.stdout, args.json, args.count, args.timeout))


def _cmd_schema(args: argparse.Namespace) -> int:
    from runtime.contract import json_schemas

    print(json.dumps(json_schemas(), indent=2))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
