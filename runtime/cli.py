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


def _size(value: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError as exc:
        msg = f"expected WIDTHxHEIGHT such as 640x480, got {value!r}"
        raise argparse.ArgumentTypeError(msg) from exc
    if w <= 0 or h <= 0:
        msg = f"sensor size must be positive, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return w, h


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError as exc:
        msg = f"expected a positive integer, got {value!r}"
        raise argparse.ArgumentTypeError(msg) from exc
    if n < 1:
        msg = f"expected a positive integer, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return n


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
    ap.add_argument(
        "--log-format",
        default=os.environ.get("SPIKEWIRE_LOG_FORMAT"),
        choices=["text", "json"],
        help="json: one JSON object per line on stderr (default: the config's [logging] format, else text)",
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
    rp.add_argument(
        "--readout",
        choices=["auto", "stream", "utterance", "window", "beat"],
        default=None,
        help="readout mode (default: the model's own, else auto)",
    )
    rp.add_argument("--device", default="replay", help="device id in MQTT topics")
    rp.add_argument(
        "--preprocess",
        type=Path,
        default=None,
        help="event files: TOML of DVS pre-processing settings (roi, pool, ...)",
    )
    rp.add_argument("--sensor-size", type=_size, default=None, metavar="WxH", help="event files without a size")
    rp.add_argument(
        "--format",
        default="auto",
        choices=["auto", "evt2", "evt3", "dat", "nmnist_bin", "aedat2", "aedat31", "aedat4", "npy"],
        help="event file format (default: detected from the header)",
    )
    rp.add_argument(
        "--chirp",
        default=None,
        metavar="PRESET|CFG",
        help="TI mmWave radar captures: chirp parameters, a preset ('openradar') or a mmWave SDK .cfg file",
    )
    rp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    rp.add_argument(
        "--report", type=Path, default=None, metavar="DIR", help="write summary.json and figures (PNG) into DIR"
    )
    rp.add_argument("--report-records", type=_positive_int, default=10_000, help="decision records kept for --report")
    rp.add_argument("--workers", type=_positive_int, default=1, help="replay the files in N processes (or tasks)")
    rp.add_argument(
        "--executor",
        choices=["process", "ray", "dask"],
        default="process",
        help="where the --workers shards run: local processes, or a Ray or Dask cluster",
    )
    rp.add_argument(
        "--executor-address", default=None, help="Ray/Dask cluster to join (default: a local one of --workers)"
    )

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
    export = md_sub.add_parser("export", help="write the network as the chip runs it (quantised) to a NIR file")
    export.add_argument("model")
    export.add_argument("--chip", default=None)
    export.add_argument("-o", "--output", type=Path, required=True, help="NIR file to write")

    dv = sub.add_parser("devices", help="list sound input devices")
    dv.add_argument("--json", action="store_true")

    bn = sub.add_parser("bench", help="benchmarks: chip workloads, decoders and whole pipelines")
    bn.add_argument(
        "suite",
        nargs="?",
        default="audio",
        choices=["audio", "decode", "dvs", "ecg", "startup"],
        help=(
            "audio: W1 on snp + FSDD pipeline + live run; decode: event-file decoders; dvs: W2 on dynapcnn; "
            "ecg: a 30-minute record through ecg-beats on dynapse2; startup: time from `spikewire run` to "
            "the first decision, cold and with a warm numba cache"
        ),
    )
    bn.add_argument("--json", action="store_true")
    bn.add_argument("--events", type=int, default=20_000_000, help="decode: events per synthetic file")
    bn.add_argument(
        "--data", type=Path, default=None, help="audio: FSDD folder; ecg: a WFDB record (default: MIT-BIH 223)"
    )
    bn.add_argument("--all-cores", action="store_true", help="ecg: do not pin the process to one core")
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

    sd = sub.add_parser(
        "send",
        help="send a recording as UDP datagrams to a daemon's dvs_udp (event files), ecg_udp or radar_udp source",
    )
    sd.add_argument(
        "path", type=Path, help="event file (any supported format), WFDB record or CSV of ECG samples, radar recording"
    )
    sd.add_argument("to", help="host:port of the receiving source")
    sd.add_argument("--speed", type=_speed, default=1.0, help="'max' (unpaced) or a factor of real time")
    sd.add_argument("--loop", action="store_true", help="send the file again and again")
    sd.add_argument("--max-events", type=int, default=4096, help="events per datagram")
    sd.add_argument("--lead", default=None, help="ECG: lead name or index to send (default: all)")
    sd.add_argument("--rate", type=float, default=None, help="ECG: sample rate of a CSV without a time column")
    sd.add_argument("--duration", type=float, default=None, metavar="S", help="ECG: send only the first S seconds")
    sd.add_argument(
        "--kind",
        choices=("auto", "events", "ecg", "radar"),
        default="auto",
        help="what the file holds; auto: WFDB/CSV is ECG, .h5/.hdf5/.txt, a folder, or a .npy of plain (not "
        "structured) numbers is radar, anything else (a .bin too: N-MNIST) events",
    )
    sd.add_argument("--chirp", default=None, help="radar: TI chirp config, a preset ('openradar') or a .cfg file")
    sd.add_argument(
        "--datagram-bytes", type=int, default=1472, help="radar: largest datagram; bigger frames are fragmented"
    )

    sc = sub.add_parser(
        "schema", help="print the JSON Schemas of the MQTT payloads (the files shipped in runtime/schemas)"
    )
    sc.add_argument("--out", type=Path, default=None, help="write <kind>.schema.json files into this folder instead")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from runtime.logs import configure_logging

    configure_logging(args.log_level, args.log_format or "text")
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
        "send": _cmd_send,
        "schema": _cmd_schema,
    }[args.command]
    return handler(args)


def _cmd_run(args: argparse.Namespace) -> int:
    from runtime.config import load_settings
    from runtime.daemon import run_daemon

    settings = load_settings(args.config)
    if args.log_format is None and settings.logging.format != "text":
        from runtime.logs import configure_logging

        configure_logging(args.log_level, settings.logging.format)
    return asyncio.run(
        run_daemon(settings, demo=args.config is None, duration_s=args.duration, config_path=args.config)
    )


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
        preprocess=_read_preprocess(args.preprocess) if args.preprocess else None,
        sensor_size=args.sensor_size,
        event_format=args.format,
        chirp=args.chirp,
        device=args.device,
        progress=sys.stderr.isatty() and args.workers == 1,
        report_dir=args.report,
        max_records=args.report_records,
        workers=args.workers,
        executor=args.executor,
        executor_address=args.executor_address,
    )
    summary = run_replay(opts)
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    for err in summary["errors"]:
        print(f"spikewire: skipped {err}", file=sys.stderr)
    return EXIT_INPUT if summary["skipped_files"] else EXIT_OK


def _read_preprocess(path: Path) -> Any:
    """A TOML file of DVS pre-processing settings, at top level or under [preprocess]."""
    import tomllib

    from pydantic import ValidationError

    from runtime.config import ConfigError, format_validation_error
    from sensors.dvs.preprocess_config import DvsPreprocessConfig

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        msg = f"{path}: pre-processing file not found"
        raise ConfigError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not valid TOML: {exc}"
        raise ConfigError(msg) from exc
    try:
        return DvsPreprocessConfig.model_validate(data.get("preprocess", data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from exc


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
    if s.get("events_read") is not None:
        rate = fmt(s["events_read_per_s_wall"] / 1e6 if s["events_read_per_s_wall"] else None)
        print(f"  events: {s['events_read']} read ({rate} M/s), {s['chip_input_events']} into the chip")
    drops = {k: v for k, v in s.get("drops", {}).items() if v}
    if drops:
        print("  dropped/repaired: " + ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))


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
        data["network"] = _describe_network(b.network)
        print(json.dumps(data, indent=None if args.json else 2))
        return EXIT_OK
    from runtime.build import prepare
    from runtime.chips.compile import CompileError

    if args.action == "export":
        return _export(args)
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
        print(json.dumps({"fits": True, "chip": report.chip, **report.summary(), "warnings": list(report.warnings)}))
    else:
        print("\n".join(report.lines()))
    return EXIT_OK


def _describe_network(net: Any) -> dict[str, Any]:
    from models.convnet import ConvNet

    if isinstance(net, ConvNet):
        return {
            "input_shape": list(net.input_shape),
            "layers": {
                lay.name: f"{'x'.join(map(str, lay.in_shape))} -> conv {lay.kernel[0]}x{lay.kernel[1]} "
                f"stride {lay.stride[0]} pad {lay.padding[0]} -> {'x'.join(map(str, lay.conv_shape))}"
                + (f" -> pool {lay.pool} -> {'x'.join(map(str, lay.out_shape))}" if lay.pool > 1 else "")
                for lay in net.layers
            },
        }
    return {
        "inputs": net.n_inputs,
        "populations": {p.name: p.size for p in net.populations},
        "projections": {
            p.name: f"{p.source} -> {p.target} {p.weight.shape[0]}x{p.weight.shape[1]}" for p in net.projections
        },
    }


def _export(args: argparse.Namespace) -> int:
    from models.network import ModelError
    from models.nir_conv import write_convnet
    from runtime.build import prepare
    from runtime.chips.dynapcnn import CompiledConv

    prep = prepare(args.model, args.chip, mismatch=None, seed=0, strict=False)
    if not isinstance(prep.compiled, CompiledConv):
        msg = f"model {prep.bundle.ident}: export of the quantised network is for convolutional chips (dynapcnn)"
        raise ModelError(msg)
    write_convnet(prep.compiled.quantised_net(), args.output, metadata={"chip": prep.compiled.profile.name})
    print(f"wrote {args.output}: {prep.bundle.ident} as {prep.compiled.profile.name} runs it (integer weights)")
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
            rates = ", ".join(str(r) for r in d.rates_hz) or "none of the standard rates"
            print(
                f"{d.index:3}  {d.name}  ({d.hostapi}, {d.max_input_channels} ch, "
                f"default {d.default_rate_hz:.0f} Hz; accepts {rates})"
            )
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    from runtime.bench import run_bench

    if args.suite == "decode":
        from sensors.dvs.decode_bench import bench_decode

        out: Any = bench_decode(n_events=args.events, repeat=args.repeat)
        print(json.dumps(out, indent=None if args.json else 2))
        return EXIT_OK
    if args.suite == "dvs":
        from runtime.bench_dvs import run_bench_dvs

        out = run_bench_dvs(seconds=args.seconds if args.seconds != 60.0 else 10.0, repeats=args.repeat)
        print(json.dumps(out, indent=None if args.json else 2))
        return EXIT_OK
    if args.suite == "startup":
        from runtime.bench_startup import bench_startup

        out = bench_startup(repeats=args.repeat)
        print(json.dumps(out, indent=None if args.json else 2))
        return EXIT_OK
    if args.suite == "ecg":
        from runtime.bench_ecg import bench_ecg

        data = Path(os.environ.get("SPIKEWIRE_DATA", "../shared/data"))
        record = args.data or data / "ecg" / "mitdb_signals_only" / "223"
        out = bench_ecg(record, repeats=args.repeat, one_core=not args.all_cores)
        print(json.dumps(out, indent=None if args.json else 2))
        return EXIT_OK
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


def _is_ecg(path: Path) -> bool:
    """A WFDB record (``208``, ``208.hea`` or ``208.dat`` beside its header) or a CSV of samples; anything
    else, a Prophesee ``.dat`` without a WFDB header included, is an event file."""
    return path.suffix == ".csv" or path.with_suffix(".hea").is_file()


def _send_kind(path: Path, kind: str) -> str:
    """``--kind auto``: ECG by ``_is_ecg``; radar for HDF5, TI text, folders and ``.npy`` arrays of plain
    numbers (a DVS ``.npy`` is a structured array of events); events otherwise (a ``.bin`` stays N-MNIST:
    a DCA1000 capture needs ``--kind radar``)."""
    if kind != "auto":
        return kind
    if _is_ecg(path):
        return "ecg"
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".h5", ".hdf5", ".txt"):
        return "radar"
    if suffix == ".npy" and path.is_file():
        import numpy as np

        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            return "events"  # let the event reader say what is wrong with it
        return "events" if arr.dtype.names else "radar"
    return "events"


def _cmd_send(args: argparse.Namespace) -> int:
    from runtime.config import ConfigError
    from sensors.address import parse_host_port

    try:
        host, port = parse_host_port(args.to)
    except ValueError as exc:
        msg = f"send: destination {exc}"
        raise ConfigError(msg) from exc
    speed = None if args.speed == "max" else float(args.speed)
    kind = _send_kind(args.path, args.kind)
    if kind == "radar":
        from sensors.radar.udp import SWRD, send_recordings

        if not SWRD.size + 8 <= args.datagram_bytes <= 65_507:
            msg = f"send: --datagram-bytes must be in {SWRD.size + 8}..65507, got {args.datagram_bytes}"
            raise ConfigError(msg)

        sent = asyncio.run(
            send_recordings(
                [args.path], host, port, speed=speed, loop=args.loop, max_datagram_bytes=args.datagram_bytes,
                chirp=args.chirp,
            )
        )  # fmt: skip
    elif kind == "ecg":
        from sensors.ecg.udp import send_record

        lead = int(args.lead) if args.lead is not None and args.lead.isdigit() else args.lead
        sent = 0
        while True:  # --loop: the record again and again, a bench-top stand-in for a live front end
            sent += asyncio.run(
                send_record(args.path, host, port, rate_hz=args.rate, speed=speed, lead=lead, duration_s=args.duration)
            )
            if not args.loop:
                break
    else:
        from sensors.dvs.udp import send_file

        sent = asyncio.run(send_file(args.path, host, port, speed=speed, max_events=args.max_events, loop=args.loop))
    print(f"sent {sent} datagrams to {host}:{port}", file=sys.stderr)
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    from runtime.contract import json_schemas, schema_files

    if args.out is None:
        print(json.dumps(json_schemas(), indent=2))
        return EXIT_OK
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in schema_files().items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(args.out / name)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
