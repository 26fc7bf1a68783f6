#!/usr/bin/env python3
"""Medians of scripts/bench.sh's raw runs: a Markdown table, the ratios
rsp/HAProxy and rsp/nginx, and an SVG bar chart, beside the CSV; and the
bytes per idle HTTP/2 connection (test h2-idle) when the run measured them.

    bench_report.py RESULTS.csv [NOTE]
    bench_report.py --combine OUT.csv RESULTS.csv...   (the rounds of several runs as one)
    bench_report.py --ms        (a filter: wrk's "1.23ms" / "456.78us" / "2.1s" to milliseconds)
"""
import csv
import statistics
import sys
from collections import defaultdict

TESTS = ["ab", "ab-k", "wrk", "wrk-100k", "wrk-1m", "wrk-10m", "tls-handshake", "tls-k", "h2", "h2-100k", "wrk-gzip"]
TARGETS = ["nginx-direct", "rsp", "haproxy", "nginx-proxy", "rsp-2-workers", "rsp-before", "rsp-shaping", "rsp-limited", "rsp-shared", "rsp-cache", "varnish", "nginx-cache", "rsp-gzip", "nginx-gzip"]
COLOURS = {
    "nginx-direct": "#9aa5b1",
    "rsp": "#d9480f",
    "haproxy": "#1c7ed6",
    "nginx-proxy": "#2b8a3e",
    "rsp-2-workers": "#f59f00",
    "rsp-before": "#868e96",
    "rsp-shaping": "#ae3ec9",
    "rsp-limited": "#0ca678",
    "rsp-shared": "#f08c00",
    "rsp-cache": "#2b8a3e",
    "varnish": "#5f3dc4",
    "nginx-cache": "#a61e4d",
    "rsp-gzip": "#0b7285",
    "nginx-gzip": "#e8590c",
}
FIELDS = [
    "requests_per_second",
    "mean_latency_ms",
    "p99_latency_ms",
    "cpu_us_per_request",
    "machine_cpu_us_per_request",
    "peak_rss_kib",
    "idle_bytes_per_connection",
]


def to_ms(text):
    text = text.strip()
    for suffix, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def medians(path):
    """Per (test, target): the medians of every field; and per (test, round):
    each target's req/s, for the ratios of targets that ran side by side."""
    runs = defaultdict(lambda: defaultdict(list))
    failed = defaultdict(int)
    per_round = defaultdict(dict)
    with open(path) as file:
        for row in csv.DictReader(file):
            key = (row["test"], row["target"])
            for field in FIELDS:
                value = number(row.get(field))
                if value is not None:
                    runs[key][field].append(value)
            failed[key] += int(float(row["failed"] or 0))
            rps = number(row["requests_per_second"])
            if rps:
                per_round[(row["test"], row["round"])][row["target"]] = rps
    table = {}
    for key, fields in runs.items():
        table[key] = {field: statistics.median(values) for field, values in fields.items()}
        rps = fields.get("requests_per_second", [])
        table[key]["rps_range"] = (min(rps), max(rps)) if rps else (None, None)
        table[key]["failed"] = failed[key]
        table[key]["rounds"] = len(rps)
    return table, per_round


def fmt(value, digits=0):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def report(table, per_round, note):
    baseline = any(key[1] == "rsp-before" for key in table)
    shaping = any(key[1] == "rsp-shaping" for key in table)
    limited = any(key[1] == "rsp-limited" for key in table)
    shared = any(key[1] == "rsp-shared" for key in table)
    tests = [test for test in TESTS if any(key[0] == test for key in table)]
    lines = [f"Medians of {max(v['rounds'] for v in table.values())} interleaved rounds. {note}", ""]
    lines.append(
        "| test | target | req/s | req/s min–max | mean latency ms | p99 latency ms | proxy CPU µs/req "
        "| machine CPU µs/req | proxy peak RSS KiB | failed |"
    )
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for test in tests:
        for target in TARGETS:
            row = table.get((test, target))
            if not row:
                continue
            low, high = row["rps_range"]
            lines.append(
                f"| {test} | {target} | {fmt(row.get('requests_per_second'))} | {fmt(low)}–{fmt(high)} "
                f"| {fmt(row.get('mean_latency_ms'), 3)} | {fmt(row.get('p99_latency_ms'), 3)} "
                f"| {fmt(row.get('cpu_us_per_request'), 2)} | {fmt(row.get('machine_cpu_us_per_request'), 1)} "
                f"| {fmt(row.get('peak_rss_kib'))} | {row['failed']} |"
            )
    lines.append("")
    lines.append(
        "| test | rsp/HAProxy req/s | rsp/nginx-proxy req/s | rsp/nginx-direct req/s "
        "| rsp/HAProxy CPU per request | rsp/nginx-proxy CPU per request "
        "| nginx-proxy/rsp machine CPU per request | rsp 2 workers / 1 worker req/s |"
        + (" rsp/rsp-before req/s | rsp/rsp-before CPU per request |" if baseline else "")
        + (" rsp-shaping/rsp req/s | rsp-shaping/rsp CPU per request |" if shaping else "")
        + (" rsp-limited/rsp req/s | rsp-limited/rsp CPU per request |" if limited else "")
        + (" rsp-shared/rsp req/s | rsp-shared/rsp CPU per request |" if shared else "")
    )
    lines.append(
        "|---|---:|---:|---:|---:|---:|---:|---:|"
        + ("---:|---:|" if baseline else "")
        + ("---:|---:|" if shaping else "")
        + ("---:|---:|" if limited else "")
        + ("---:|---:|" if shared else "")
    )
    for test in tests:
        rsp = table.get((test, "rsp"))
        if not rsp:
            continue

        def ratio(target, field="requests_per_second", mine=rsp):
            other = table.get((test, target), {}).get(field)
            value = mine.get(field)
            return f"{value / other:.2f}" if value and other else "-"

        scaling = ratio("rsp", mine=table.get((test, "rsp-2-workers"), {}))

        def shaped(field):
            return ratio("rsp", field, table.get((test, "rsp-shaping"), {}))

        def limits(field):
            return ratio("rsp", field, table.get((test, "rsp-limited"), {}))

        def synced(field):
            return ratio("rsp", field, table.get((test, "rsp-shared"), {}))

        machine = ratio("rsp", "machine_cpu_us_per_request", table.get((test, "nginx-proxy"), {}))
        lines.append(
            f"| {test} | {ratio('haproxy')} | {ratio('nginx-proxy')} | {ratio('nginx-direct')} "
            f"| {ratio('haproxy', 'cpu_us_per_request')} | {ratio('nginx-proxy', 'cpu_us_per_request')} "
            f"| {machine} | {scaling} |"
            + (f" {ratio('rsp-before')} | {ratio('rsp-before', 'cpu_us_per_request')} |" if baseline else "")
            + (f" {shaped('requests_per_second')} | {shaped('cpu_us_per_request')} |" if shaping else "")
            + (f" {limits('requests_per_second')} | {limits('cpu_us_per_request')} |" if limited else "")
            + (f" {synced('requests_per_second')} | {synced('cpu_us_per_request')} |" if shared else "")
        )
    lines.append("")
    lines.append(
        "| test | rsp/HAProxy req/s, each round | rounds rsp ≥ HAProxy | rsp/nginx-proxy req/s, each round "
        "| rounds rsp ≥ 1.1 × nginx-proxy |"
    )
    lines.append("|---|---:|---:|---:|---:|")
    for test in tests:
        rounds = [targets for (name, _), targets in per_round.items() if name == test]

        def spread(other, goal):
            ratios = sorted(r["rsp"] / r[other] for r in rounds if r.get("rsp") and r.get(other))
            if not ratios:
                return "- | -"
            reached = sum(ratio >= goal for ratio in ratios)
            return f"{ratios[0]:.2f}–{ratios[-1]:.2f} | {reached} of {len(ratios)}"

        if rounds:
            lines.append(f"| {test} | {spread('haproxy', 1.0)} | {spread('nginx-proxy', 1.1)} |")
    lines.append("")
    idle = [(target, table[("h2-idle", target)]) for target in TARGETS if ("h2-idle", target) in table]
    if idle:
        mine = dict(idle).get("rsp", {}).get("idle_bytes_per_connection")

        def per(target):
            other = table.get(("h2-idle", target), {}).get("idle_bytes_per_connection")
            return f"{mine / other:.2f}" if mine and other else "-"

        lines.append("| h2-idle | bytes of proxy RSS per idle HTTP/2 connection | proxy peak RSS KiB |")
        lines.append("|---|---:|---:|")
        for target, row in idle:
            lines.append(f"| {target} | {fmt(row.get('idle_bytes_per_connection'))} | {fmt(row.get('peak_rss_kib'))} |")
        lines.append("")
        lines.append(f"Idle HTTP/2 connection memory, rsp/HAProxy {per('haproxy')}, rsp/nginx-proxy {per('nginx-proxy')}.")
        lines.append("")
    lines.extend(caches(table, tests))
    gzip = table.get(("wrk-gzip", "rsp-gzip"))
    theirs = table.get(("wrk-gzip", "nginx-gzip"))
    if gzip and theirs:
        def versus(field):
            mine, other = gzip.get(field), theirs.get(field)
            return f"{mine / other:.2f}" if mine and other else "-"
        lines.append("| gzip, 100 KB of text | rsp-gzip/nginx-gzip req/s | rsp-gzip/nginx-gzip CPU per request |")
        lines.append("|---|---:|---:|")
        lines.append(f"| wrk-gzip | {versus('requests_per_second')} | {versus('cpu_us_per_request')} |")
        lines.append("")
    lines.append(
        "Machine CPU is every core's busy time (load generator, backend and proxy) per request. When "
        "the machine is saturated, req/s through a proxy can be at most about 2 cores / machine CPU per "
        "request, so the column nginx-proxy/rsp machine CPU per request is the req/s ratio the proxies' "
        "own efficiency allows here."
    )
    return "\n".join(lines) + "\n"


def caches(table, tests):
    """rsp's cache against Varnish and nginx's proxy_cache, all answering hits."""
    if not any(key[1] == "rsp-cache" for key in table):
        return []
    lines = [
        "| test (hits) | rsp-cache/varnish req/s | rsp-cache/nginx-cache req/s | rsp-cache / the faster req/s "
        "| rsp-cache/varnish CPU per request | rsp-cache/nginx-cache CPU per request |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for test in tests:
        mine = table.get((test, "rsp-cache"))
        if not mine:
            continue

        def ratio(other, field="requests_per_second"):
            theirs = table.get((test, other), {}).get(field)
            value = mine.get(field)
            return value / theirs if value and theirs else None

        faster = max(
            (table.get((test, other), {}).get("requests_per_second") or 0 for other in ("varnish", "nginx-cache")),
            default=0,
        )
        versus_faster = mine["requests_per_second"] / faster if faster and mine.get("requests_per_second") else None
        cells = [ratio("varnish"), ratio("nginx-cache"), versus_faster,
                 ratio("varnish", "cpu_us_per_request"), ratio("nginx-cache", "cpu_us_per_request")]
        lines.append(f"| {test} | " + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")
    lines.append("")
    return lines


def chart(table, title):
    width, height, left, top, bottom = 960, 380, 70, 40, 60
    plot_w, plot_h = width - left - 20, height - top - bottom
    top_value = max((row.get("requests_per_second") or 0) for row in table.values()) * 1.1 or 1
    tests = [test for test in TESTS if any(key[0] == test for key in table)]
    group_w = plot_w / len(tests)
    targets = [target for target in TARGETS if any(key[1] == target for key in table)]
    bar_w = group_w * 0.8 / len(targets)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>',
    ]
    for step in range(6):
        value = top_value * step / 5
        y = top + plot_h - plot_h * step / 5
        out.append(f'<line x1="{left}" x2="{width - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value / 1000:.0f}k</text>')
    for group, test in enumerate(tests):
        x0 = left + group * group_w + group_w * 0.1
        for index, target in enumerate(targets):
            value = (table.get((test, target)) or {}).get("requests_per_second") or 0
            bar_h = plot_h * value / top_value
            x, y = x0 + index * bar_w, top + plot_h - bar_h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{bar_h:.1f}" fill="{COLOURS[target]}"/>')
            out.append(f'<text x="{x + bar_w / 2 - 1:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="9">{value / 1000:.1f}k</text>')
        out.append(f'<text x="{x0 + group_w * 0.4:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{test}</text>')
    for index, target in enumerate(targets):
        x = left + index * 150
        out.append(f'<rect x="{x}" y="{height - 22}" width="12" height="12" fill="{COLOURS[target]}"/>')
        out.append(f'<text x="{x + 16}" y="{height - 12}">{target}</text>')
    out.append(f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" text-anchor="middle">requests/s (median)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def combine(path, runs):
    """Writes the rounds of `runs` into one CSV, numbered on from run to run."""
    with open(path, "w", newline="") as out:
        writer = None
        offset = 0
        for run in runs:
            with open(run) as file:
                rows = list(csv.DictReader(file))
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=list(rows[0].keys()))
                writer.writeheader()
            for row in rows:
                row = dict(row)
                row["round"] = str(int(row["round"]) + offset)
                writer.writerow({key: row.get(key, "") for key in writer.fieldnames})
            offset += max(int(row["round"]) for row in rows)


def main():
    if sys.argv[1:] == ["--ms"]:
        print(f"{to_ms(sys.stdin.read()):.3f}")
        return
    if sys.argv[1] == "--combine":
        path, runs = sys.argv[2], sys.argv[3:]
        combine(path, runs)
        note = "Runs combined: " + ", ".join(runs) + "."
    else:
        path = sys.argv[1]
        note = sys.argv[2] if len(sys.argv) > 2 else ""
    table, per_round = medians(path)
    text = report(table, per_round, note)
    base = path.rsplit(".", 1)[0]
    with open(base + ".md", "w") as file:
        file.write(text)
    with open(base + ".svg", "w") as file:
        file.write(chart(table, "requests/s through each proxy, nginx backend, this machine"))
    print(text)
    print(f"written: {base}.md, {base}.svg, {path}")


if __name__ == "__main__":
    main()
