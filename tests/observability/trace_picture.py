"""The README's picture of one order's trace (docs/images/order-trace.png), drawn from what
Jaeger's query API returns for it, since the Jaeger build of scripts/install-go-tools.sh
carries no UI (its page at / is a placeholder).

    python trace_picture.py --chromium PATH --out PNG       the shop under Jaeger, one order, its picture
    python trace_picture.py --chromium PATH --out PNG --trace FILE   the picture of a saved trace
    python trace_picture.py --svg OUT.svg --trace FILE       the drawing alone, no browser

scripts/trace-picture.sh runs the first (`make trace-picture`). The drawing (draw()) is a
waterfall as Jaeger's UI draws one: a row per span in tree order, indented under its
parent, the service's colour, the operation, a bar from the span's start over its
duration; the trace id, the span and service counts and the total duration above. It is a
self-contained SVG (no fonts, scripts or images from elsewhere), which headless Chromium
renders to PNG. Stdlib only; the programs are started by stack.py, as the tests start them.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack  # noqa: E402

# One colour per service, always the same (Tableau 10); a service not listed takes the
# first colour left.
SERVICE_COLOURS = {
    "orders": "#4e79a7",
    "catalog": "#76b7b2",
    "inventory": "#59a14f",
    "orchestrator": "#b07aa1",
    "payments": "#f28e2b",
    "fulfillment": "#9c755f",
    "notifications": "#e15759",
}
SPARE_COLOURS = ["#edc948", "#ff9da7", "#bab0ac", "#86bcb6", "#d37295"]

WIDTH = 1000  # px; GitHub shows a README image at most about 880 px wide, PNG at 2x
PAD = 16
LABEL = 430  # the span names' column
ROW = 24
INDENT = 14
FONT = "DejaVu Sans, Verdana, Helvetica, Arial, sans-serif"
# DejaVu Sans's advance widths (em) of the narrow and wide letters; the rest about 0.62 em.
# Enough to space the legend and to cut a name short where it would run into the bars.
NARROW = dict.fromkeys("ijl.,:'|!", 0.28) | dict.fromkeys("ft/ ()[]-", 0.35) | {"r": 0.41, "s": 0.52, "z": 0.53, "c": 0.55}
WIDE = dict.fromkeys("mwMW", 0.9) | dict.fromkeys("ABCDGHKNOQRSUVXY", 0.74)


@dataclass
class Row:
    span: dict
    service: str
    depth: int


def spans_in_order(trace: dict) -> list[Row]:
    """The spans depth first, children by start time (as Jaeger lists them); a span whose
    parent is not in the trace is a root."""
    spans = {s["spanID"]: s for s in trace["spans"]}
    children: dict[str | None, list[dict]] = {}
    for span in spans.values():
        parents = [r["spanID"] for r in span.get("references", []) if r["spanID"] in spans and r["spanID"] != span["spanID"]]
        children.setdefault(parents[0] if parents else None, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: (s["startTime"], s["spanID"]))
    rows: list[Row] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            rows.append(Row(span, trace["processes"][span["processID"]]["serviceName"], depth))
            walk(span["spanID"], depth + 1)

    walk(None, 0)
    return rows


def colours(services: list[str]) -> dict[str, str]:
    spare = iter(SPARE_COLOURS * 4)
    return {name: SERVICE_COLOURS.get(name) or next(spare) for name in sorted(services)}


def duration(us: float) -> str:
    """As Jaeger writes it: 850µs, 12.3ms, 1.42s."""
    if us == 0:
        return "0"
    if us < 1000:
        return f"{us:.0f}µs"
    if us < 1_000_000:
        ms = us / 1000
        return f"{ms:.3g}ms" if ms < 100 else f"{ms:.0f}ms"
    return f"{us / 1_000_000:.3g}s"


def ticks(total: float, count: int = 5) -> list[float]:
    """Round times from 0 up to `total` (µs), about `count` of them."""
    if total <= 0:
        return [0.0]
    raw = total / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [i * step for i in range(int(total // step) + 1)]


def tags(span: dict) -> dict:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def failed(span: dict) -> bool:
    t = tags(span)
    return t.get("error") in (True, "true") or t.get("otel.status_code") == "ERROR"


def operation(span: dict) -> str:
    """The operation's name; an event's with its subject (every event span is "event")."""
    subject = tags(span).get("subject")
    return f"{span['operationName']} {subject}" if subject else span["operationName"]


def width(text: str, size: float = 13, bold: bool = False) -> float:
    """About how many px `text` takes in DejaVu Sans."""
    em = sum(NARROW.get(c) or WIDE.get(c) or 0.62 for c in text)
    return em * size * (1.08 if bold else 1)


def short(text: str, room: float) -> str:
    """`text`, cut short with an ellipsis to fit in `room` px. A gRPC method's name
    (package.Service/Method) loses its package first."""
    service, slash, method = text.partition("/")
    if width(text) > room and slash and "." in service:
        text = service.rsplit(".", 1)[1] + slash + method
    if width(text) <= room:
        return text
    while len(text) > 1 and width(text + "…") > room:
        text = text[:-1]
    return text + "…"


def draw(trace: dict) -> str:
    """The waterfall of one trace (a trace of Jaeger's /api/traces/ID reply) as SVG."""
    if not trace.get("spans"):
        raise ValueError(f"trace {trace.get('traceID')} has no spans")
    rows = spans_in_order(trace)
    start = min(s["startTime"] for s in trace["spans"])
    end = max(s["startTime"] + s["duration"] for s in trace["spans"])
    total = max(end - start, 1)
    services = sorted({r.service for r in rows})
    colour = colours(services)
    root = rows[0]

    head = 92  # title, summary, legend
    ruler = 26
    top = head + ruler
    height = top + ROW * len(rows) + PAD
    x0, x1 = LABEL + PAD, WIDTH - PAD - 62  # the bars' span; room for a duration after them
    scale = (x1 - x0) / total

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'font-family="{FONT}" font-size="13">',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        # Header: what it is, then the numbers Jaeger's trace page shows.
        f'<text x="{PAD}" y="28" font-size="17" font-weight="bold" fill="#222">'
        f"{escape(root.service)}: {escape(root.span['operationName'])}</text>",
        f'<text x="{PAD}" y="50" fill="#555">trace <tspan font-family="DejaVu Sans Mono, monospace" fill="#222">'
        f'{escape(trace["traceID"])}</tspan>  ·  {len(rows)} spans  ·  {len(services)} services  ·  '
        f'depth {max(r.depth for r in rows) + 1}  ·  duration <tspan font-weight="bold" fill="#222">{duration(total)}</tspan></text>',
    ]
    x = PAD
    for name in services:  # the legend
        out.append(f'<rect x="{x}" y="64" width="12" height="12" rx="2" fill="{colour[name]}"/>')
        out.append(f'<text x="{x + 17}" y="75" fill="#333">{escape(name)}</text>')
        x += 17 + width(name) + 20
    # The ruler and its grid lines down through the rows.
    out.append(f'<rect x="0" y="{head}" width="{WIDTH}" height="{ruler}" fill="#ececec"/>')
    out.append(f'<text x="{PAD}" y="{head + 17}" font-weight="bold" fill="#444">service  operation</text>')
    for t in ticks(total):
        tx = x0 + t * scale
        anchor = "start" if t == 0 else "middle"
        out.append(f'<line x1="{tx:.1f}" y1="{head + ruler - 6}" x2="{tx:.1f}" y2="{height - PAD}" stroke="#d6d6d6"/>')
        out.append(f'<text x="{tx:.1f}" y="{head + 15}" font-size="11" fill="#555" text-anchor="{anchor}">{duration(t)}</text>')
    for i, row in enumerate(rows):
        span, y = row.span, top + i * ROW
        c = colour[row.service]
        out.append(f'<g class="span" data-span-id="{escape(span["spanID"])}" data-service="{escape(row.service)}">')
        if i % 2:
            out.append(f'<rect x="0" y="{y}" width="{WIDTH}" height="{ROW}" fill="#f6f6f6" fill-opacity="0.8"/>')
        indent = PAD + row.depth * INDENT
        out.append(f'<rect x="{indent}" y="{y + 4}" width="4" height="{ROW - 8}" rx="1" fill="{c}"/>')
        room = LABEL - indent - 10
        name = row.service
        op = short(operation(span), room - width(name + " ", bold=True))
        out.append(
            f'<text x="{indent + 10}" y="{y + 16.5}"><tspan font-weight="bold" fill="#222">{escape(name)}</tspan>'
            f'<tspan fill="#555"> {escape(op)}</tspan></text>'
        )
        bx = x0 + (span["startTime"] - start) * scale
        bw = max(span["duration"] * scale, 2)
        stroke = ' stroke="#c00" stroke-width="1.5"' if failed(span) else ""
        out.append(f'<rect x="{bx:.1f}" y="{y + 5}" width="{bw:.1f}" height="{ROW - 10}" rx="2" fill="{c}"{stroke}/>')
        label = duration(span["duration"]) + ("  error" if failed(span) else "")
        if bx + bw + 6 + width(label, 11) <= WIDTH - 4:
            out.append(f'<text x="{bx + bw + 5:.1f}" y="{y + 16}" font-size="11" fill="#555">{label}</text>')
        else:  # at the right edge: before the bar
            out.append(f'<text x="{bx - 5:.1f}" y="{y + 16}" font-size="11" fill="#555" text-anchor="end">{label}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def page(svg: str) -> str:
    """An HTML page that is the drawing and nothing else, for the browser's screenshot."""
    return f'<!doctype html>\n<html><head><meta charset="utf-8"><style>html,body{{margin:0;padding:0;overflow:hidden}}</style></head>\n<body>\n{svg}</body></html>\n'


def svg_size(svg: str) -> tuple[int, int]:
    head = svg[: svg.index(">")]
    width = int(head.split('width="')[1].split('"')[0])
    height = int(head.split('height="')[1].split('"')[0])
    return width, height


def screenshot(chromium: str, svg: str, png: Path, workdir: Path) -> None:
    """Headless Chromium renders the drawing to `png`, at twice its size (sharp when GitHub
    scales it down)."""
    html = workdir / "trace.html"
    html.write_text(page(svg), encoding="utf-8")
    width, height = svg_size(svg)
    shot = workdir / "trace.png"
    argv = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
        "--disable-extensions", "--force-device-scale-factor=2", f"--user-data-dir={workdir / 'chromium'}",
        f"--window-size={width},{height}", f"--screenshot={shot}", html.as_uri(),
    ]  # fmt: skip
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if run.returncode != 0 or not shot.is_file():
        raise RuntimeError(f"chromium made no screenshot ({run.returncode}):\n{run.stderr[-2000:]}")
    png.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, png)


def settled(jaeger: stack.Jaeger, trace_id: str, quiet: float = 3, timeout: float = 30) -> dict:
    """The trace once no span has come in for `quiet` seconds (the last services' spans are
    exported in batches), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        [trace] = stack.get_json(f"{jaeger.query_url}/api/traces/{trace_id}")["data"]
        if len(trace["spans"]) != last:
            last, since = len(trace["spans"]), time.monotonic()
        elif time.monotonic() - since >= quiet or time.monotonic() > deadline:
            return trace
        time.sleep(0.5)


def live_trace(meshctl: Path, workdir: Path) -> dict:
    """The shop under Jaeger on free loopback ports, one order placed and completed: its
    trace as Jaeger's query API returns it. Everything started is stopped."""
    running: list[stack.Proc] = []
    try:
        print("trace-picture: starting Jaeger and the shop...", file=sys.stderr)
        jaeger = stack.start_jaeger(workdir)
        running.append(jaeger.proc)
        shop = stack.start_shop(workdir, meshctl, jaeger.otlp_endpoint)
        running.append(shop.proc)
        grpcurl = stack.BIN / "grpcurl"
        name = stack.place_order(grpcurl, shop, "tok_visa_approved")
        print(f"trace-picture: placed {name}; waiting for it to complete and for its trace...", file=sys.stderr)

        def completed():
            order = stack.grpcurl(grpcurl, shop.grpc("orders"), "meshmart.orders.v1.OrderService/GetOrder", {"name": name})["order"]
            if order["state"] == "STATE_FAILED":
                raise RuntimeError(f"{name} failed: {order}")
            return order["state"] == "STATE_COMPLETED"

        stack.wait_for(f"{name} to complete", completed, 90, every=1, proc=shop.proc)
        trace = stack.order_trace(jaeger, name.removeprefix("orders/"), 60)
        return settled(jaeger, trace["traceID"])
    except BaseException:
        for proc in running:
            print(f"--- {proc.name} log (end)\n{proc.tail(20)}", file=sys.stderr)
        raise
    finally:
        stop_all(running)


def stop_all(procs: list[stack.Proc]) -> None:
    """Stops them all, last started first, even when Ctrl-C or SIGTERM comes meanwhile (each
    stop is bounded: SIGKILL after its grace); such a signal is raised again after."""
    came: list[int] = []
    before = {s: signal.signal(s, lambda signum, _frame: came.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for proc in reversed(procs):
            proc.stop()
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    if came:
        raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="the PNG to write")
    parser.add_argument("--svg", type=Path, help="also (or only) the SVG to write")
    parser.add_argument("--chromium", help="headless Chromium, to render the PNG")
    parser.add_argument("--meshctl", type=Path, default=None, help="default: stack.meshctl_path()")
    parser.add_argument("--trace", type=Path, help="draw this saved trace (Jaeger's /api/traces/ID JSON) instead")
    parser.add_argument("--save-trace", type=Path, help="keep the live trace's JSON here")
    args = parser.parse_args(argv)
    if args.out and not args.chromium:
        parser.error("--out needs --chromium")
    if not args.out and not args.svg:
        parser.error("nothing to write: --out PNG and/or --svg SVG")
    # SIGTERM ends it through the finally blocks that stop what it started, as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="meshmart-trace-picture-"))
    try:
        if args.trace:
            reply = json.loads(args.trace.read_text())
            trace = reply["data"][0] if "data" in reply else reply
        else:
            trace = live_trace(args.meshctl or stack.meshctl_path(), workdir)
            if args.save_trace:
                args.save_trace.write_text(json.dumps({"data": [trace]}, indent=1) + "\n")
        svg = draw(trace)
        if args.svg:
            args.svg.write_text(svg, encoding="utf-8")
        if args.out:
            screenshot(args.chromium, svg, args.out, workdir)
        services = sorted({trace["processes"][s["processID"]]["serviceName"] for s in trace["spans"]})
        print(f"trace-picture: trace {trace['traceID']}: {len(trace['spans'])} spans from {', '.join(services)}"
              f" -> {', '.join(str(p) for p in (args.out, args.svg) if p)}", file=sys.stderr)  # fmt: skip
        return 0
    except (RuntimeError, TimeoutError, OSError, ValueError, KeyError) as error:
        print(f"trace-picture: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("trace-picture: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
