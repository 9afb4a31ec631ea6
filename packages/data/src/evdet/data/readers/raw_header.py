"""Text header of a Prophesee RAW recording (``.raw``): the event encoding and the sensor size.

A RAW file starts with ASCII lines ``% <key> <value>`` and, in files written by Metavision SDK 4 and later, ends
them with ``% end`` (Prophesee, "RAW File Format", docs.prophesee.ai/stable/data/file_formats/raw.html). A typical
EVK4 header::

    % camera_integrator_name Prophesee
    % evt 3.0
    % format EVT3;height=720;width=1280
    % generation 4.2
    % geometry 1280x720
    % plugin_name hal_plugin_imx636_evk4
    % sensor_generation 4.2
    % end

Older files (SDK 2.x/3.x) hold only ``% evt 2.0`` / ``% evt 3.0`` and ``% plugin_name`` and have no ``% end``; the
binary data then start at the first line that does not begin with ``%``.

Encoding: ``% evt 2.0`` / ``% evt 3.0``, or the first field of ``% format`` (``EVT2`` / ``EVT3``). Sensor size, first
match wins: ``% format ...;height=H;width=W``, ``% geometry WxH``, then the sensor in :data:`KNOWN_SENSORS` named by
``% sensor_name``, ``% plugin_name`` or ``% sensor_generation`` / ``% generation``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from evdet.data.readers.base import RecordingError

__all__ = ["ENCODINGS", "KNOWN_SENSORS", "MAX_COORDINATE", "RawHeader", "parse_raw_header"]

#: Encodings this reader decodes: header name -> (``% evt`` value, ``% format`` name, bytes per word).
ENCODINGS = {"evt2": ("2.0", "EVT2", 4), "evt3": ("3.0", "EVT3", 2)}

#: Largest sensor side (px): EVT 2.0 and EVT 3.0 carry 11-bit x and y ("supporting sensors with up to 2048x2048
#: resolution", Prophesee EVT 2.0 / EVT 3.0 format pages, docs.prophesee.ai/stable/data/encoding_formats/).
MAX_COORDINATE = 2048


@dataclass(frozen=True)
class KnownSensor:
    """A Prophesee sensor whose size a header without geometry can be recognised by.

    Attributes:
        name: sensor name as Prophesee writes it.
        width, height: pixel array (px).
        sensor_names: ``% sensor_name`` values (upper case).
        plugin_parts: substrings of ``% plugin_name`` (lower case) that name the sensor.
        generations: ``% sensor_generation`` / ``% generation`` values.
        source: where the size is stated.
    """

    name: str
    width: int
    height: int
    sensor_names: tuple[str, ...]
    plugin_parts: tuple[str, ...]
    generations: tuple[str, ...]
    source: str


#: Sensors recognised without a geometry line. Plugin names are those of Metavision/OpenEB
#: (github.com/prophesee-ai/openeb, e.g. ``hal_plugin_gen31_fx3``, ``hal_plugin_gen41_evk2``,
#: ``hal_plugin_imx636_evk4``); the generation numbers are those the SDK writes next to a geometry line
#: (``% generation 3.1`` with ``640x480``, ``% generation 4.2`` with ``1280x720`` for IMX636).
KNOWN_SENSORS = (
    KnownSensor("IMX636 (Sony/Prophesee HD, EVK4, EVK3 HD)", 1280, 720, ("IMX636",), ("imx636",), ("4.2",),
                "docs.prophesee.ai/stable/hw/sensors/imx636.html: 1280x720 pixels"),
    KnownSensor("Gen4.1 HD (EVK2 HD, Gen4 ATIS)", 1280, 720, (), ("gen41", "gen4_"), ("4.1", "4.0"),
                "docs.prophesee.ai (discontinued products, Gen4.1 HD sensor): 1280x720; Prophesee Gen4 1Mpx "
                "automotive dataset (Perot et al., NeurIPS 2020): 1280x720"),
    KnownSensor("Gen3.1 VGA (EVK1, EVK2/EVK3 VGA)", 640, 480, (), ("gen31",), ("3.1",),
                "docs.prophesee.ai/stable/hw/sensors/gen31.html: 640x480 pixels"),
    KnownSensor("GenX320", 320, 320, ("GENX320",), ("genx320",), (),
                "docs.prophesee.ai/stable/hw/sensors/genx320.html: 320x320 pixels"),
)

#: Longest header line read (bytes); a longer "line" is binary data after a header without ``% end``.
_MAX_LINE = 1 << 16


@dataclass(frozen=True)
class RawHeader:
    """What :func:`parse_raw_header` read.

    Attributes:
        fields: ``{key: value}`` of the header lines, keys as written (first occurrence wins).
        data_offset: byte offset of the first binary word.
        encoding: ``"evt2"`` or ``"evt3"``.
        width, height: sensor size (px).
        geometry_from: the header line the size came from, e.g. ``"format"``, ``"geometry"``,
            ``"plugin_name hal_plugin_imx636_evk4 (IMX636 ...)"``.
    """

    fields: dict[str, str]
    data_offset: int
    encoding: str
    width: int
    height: int
    geometry_from: str


def parse_raw_header(path: Path) -> RawHeader:
    """Read and interpret the ``%`` header of a RAW file.

    Args:
        path: the ``.raw`` file.

    Returns:
        The :class:`RawHeader`.

    Raises:
        RecordingError: naming the file when it does not start with ``%`` header lines, a header line is cut off,
            neither ``% evt`` nor ``% format`` gives EVT 2.0 / EVT 3.0 (EVT 2.1 and others are named as
            unsupported), ``% evt`` and ``% format`` disagree, a ``height``/``width``/``geometry`` value is not a
            size in ``[1, 2048]``, ``format`` and ``geometry`` disagree, or no header line gives the sensor size
            (the message lists the keys looked for and the known sensors).
    """
    fields, data_offset = _read_fields(path)
    encoding = _encoding(path, fields)
    width, height, source = _geometry(path, fields)
    return RawHeader(fields, data_offset, encoding, width, height, source)


def _read_fields(path: Path) -> tuple[dict[str, str], int]:
    """``({key: value}, offset of the first binary byte)`` of the ``%`` lines."""
    fields: dict[str, str] = {}
    with open(path, "rb") as f:
        while True:
            line_start = f.tell()
            if f.read(1) != b"%":
                f.seek(line_start)
                break
            line = f.readline(_MAX_LINE)
            if not line.endswith(b"\n"):
                raise RecordingError(
                    f"{path}: header line at byte {line_start} is cut off (no newline within {_MAX_LINE} bytes); "
                    "expected '% <key> <value>' lines followed by the binary event data"
                )
            parts = line.decode("latin-1").strip().split(None, 1)
            if parts == ["end"]:
                line_start = f.tell()
                break
            if parts:
                fields.setdefault(parts[0], parts[1].strip() if len(parts) == 2 else "")
    if line_start == 0:
        raise RecordingError(
            f"{path}: does not start with a '% <key> <value>' text header (not a Prophesee RAW file?)"
        )
    return fields, line_start


def _field(fields: dict[str, str], key: str) -> str | None:
    """Value of ``key`` matched case-insensitively, or ``None``."""
    return next((v for k, v in fields.items() if k.lower() == key), None)


def _format_parts(fields: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """``% format EVT3;height=720;width=1280`` -> ``("EVT3", {"height": "720", "width": "1280"})``."""
    value = _field(fields, "format")
    if value is None:
        return None, {}
    name, *params = [p.strip() for p in value.split(";")]
    options = {}
    for param in params:
        key, _, v = param.partition("=")
        options[key.strip().lower()] = v.strip()
    return name.upper(), options


def _encoding(path: Path, fields: dict[str, str]) -> str:
    """``"evt2"`` or ``"evt3"`` from ``% evt`` and ``% format``."""
    evt = _field(fields, "evt")
    format_name, _ = _format_parts(fields)
    by_evt = by_format = None
    if evt is not None:
        by_evt = next((k for k, (v, _, _) in ENCODINGS.items() if v == evt.strip()), None)
        if by_evt is None:
            raise RecordingError(
                f"{path}: header '% evt {evt}' is not a supported encoding, expected '% evt 2.0' or '% evt 3.0' "
                "(EVT 2.1 and other encodings are not decoded)"
            )
    if format_name is not None:
        by_format = next((k for k, (_, name, _) in ENCODINGS.items() if name == format_name), None)
        if by_format is None:
            raise RecordingError(
                f"{path}: header '% format {_field(fields, 'format')}' is not a supported encoding, expected EVT2 "
                "or EVT3 (EVT21 and other encodings are not decoded)"
            )
    if by_evt is None and by_format is None:
        raise RecordingError(
            f"{path}: no '% evt <version>' or '% format <encoding>;...' header line; expected a Prophesee RAW header "
            "naming the encoding ('% evt 2.0' / '% evt 3.0' or '% format EVT2' / '% format EVT3')"
        )
    if by_evt is not None and by_format is not None and by_evt != by_format:
        raise RecordingError(
            f"{path}: header lines disagree on the encoding: '% evt {evt}' but '% format {_field(fields, 'format')}'"
        )
    return by_evt or by_format  # type: ignore[return-value]


def _size(path: Path, what: str, text: str) -> int:
    """A sensor side in ``[1, MAX_COORDINATE]`` from header text."""
    try:
        value = int(text)
    except ValueError:
        raise RecordingError(f"{path}: header {what} is {text!r}, expected an integer number of pixels") from None
    if not 1 <= value <= MAX_COORDINATE:
        raise RecordingError(f"{path}: header {what} is {value}, expected 1 <= {what} <= {MAX_COORDINATE} px")
    return value


def _geometry(path: Path, fields: dict[str, str]) -> tuple[int, int, str]:
    """``(width, height, source)`` from the header (module docstring for the order)."""
    _, options = _format_parts(fields)
    from_format = None
    if "height" in options or "width" in options:
        if "height" not in options or "width" not in options:
            raise RecordingError(
                f"{path}: header '% format {_field(fields, 'format')}' gives only one of height= and width=, "
                "expected both"
            )
        from_format = (_size(path, "format width", options["width"]), _size(path, "format height", options["height"]))
    from_geometry = None
    geometry = _field(fields, "geometry")
    if geometry is not None:
        match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", geometry)
        if match is None:
            raise RecordingError(f"{path}: header '% geometry {geometry}' is not '<width>x<height>' (e.g. 1280x720)")
        from_geometry = (_size(path, "geometry width", match[1]), _size(path, "geometry height", match[2]))
    if from_format and from_geometry and from_format != from_geometry:
        raise RecordingError(
            f"{path}: header lines disagree on the sensor size: '% format {_field(fields, 'format')}' gives "
            f"{from_format[0]}x{from_format[1]} but '% geometry {geometry}'"
        )
    if from_format:
        return from_format[0], from_format[1], "format"
    if from_geometry:
        return from_geometry[0], from_geometry[1], "geometry"
    sensor_name = (_field(fields, "sensor_name") or "").strip().upper()
    plugin = (_field(fields, "plugin_name") or "").strip().lower()
    generation = (_field(fields, "sensor_generation") or _field(fields, "generation") or "").strip()
    for sensor in KNOWN_SENSORS:
        if sensor_name and sensor_name in sensor.sensor_names:
            return sensor.width, sensor.height, f"sensor_name {sensor_name} ({sensor.name})"
    for sensor in KNOWN_SENSORS:
        if plugin and any(part in plugin for part in sensor.plugin_parts):
            return sensor.width, sensor.height, f"plugin_name {plugin} ({sensor.name})"
    for sensor in KNOWN_SENSORS:
        if generation and generation in sensor.generations:
            return sensor.width, sensor.height, f"sensor_generation {generation} ({sensor.name})"
    seen = {k: v for k, v in (("sensor_name", sensor_name), ("plugin_name", plugin), ("generation", generation)) if v}
    known = "; ".join(f"{s.name} {s.width}x{s.height}" for s in KNOWN_SENSORS)
    raise RecordingError(
        f"{path}: sensor size unknown: no '% format <enc>;height=<H>;width=<W>' or '% geometry <W>x<H>' header line, "
        f"and the sensor is not recognised from {seen or 'no sensor_name/plugin_name/generation line'} "
        f"(known sensors: {known})"
    )
