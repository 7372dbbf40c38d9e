"""What a harness run prints and writes: tables, the targets of issue 7, JSON and a PNG plot.

Files go to bench/results/: `<timestamp>-<mode>.json` and `.png`, and copies named
`latest-<mode>.json` / `latest-<mode>.png`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def fmt(value: Any, digits: int = 1) -> str:
    """A number for a table cell ("-" when missing)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain text table, columns right-aligned except the first."""
    cells = [headers, *[[fmt(cell) for cell in row] for row in rows]]
    widths = [max(len(str(row[column])) for row in cells) for column in range(len(headers))]
    lines = []
    for row in cells:
        first, rest = str(row[0]).ljust(widths[0]), row[1:]
        lines.append(
            "  ".join([first, *(str(c).rjust(w) for c, w in zip(rest, widths[1:], strict=True))])
        )
    return "\n".join(lines)


def sweep_rows(label: str, sweep: dict[str, Any]) -> list[list[Any]]:
    """One table row per step of a chat sweep."""
    rows = []
    for step in sweep["steps"]:
        chat = step["kinds"]["chat"]
        rows.append(
            [
                label,
                chat["sends_per_s"],
                chat["offered_per_s"],
                chat["delivered_per_s"],
                chat["delivered_ratio"],
                chat["p50_ms"],
                chat["p99_ms"],
                chat["lost"],
                step["server_cpu_pct"],
                step["server_cpu_us_per_delivery"],
                step["loadgen_cpu_pct"],
                "yes" if step["valid"] else "INVALID",
            ]
        )
    return rows


SWEEP_HEADERS = [
    "server", "sends/s", "offered/s", "delivered/s", "ratio", "p50 ms", "p99 ms", "lost",
    "srv CPU %", "srv µs/deliv", "loadgen CPU %", "valid",
]  # fmt: skip


def describe(results: dict[str, Any]) -> str:
    """Every scenario's table, then the targets."""
    out: list[str] = []
    scenarios = results["scenarios"]
    if "a" in scenarios:
        a = scenarios["a"]
        out.append(f"\n(a) 1 room x {a['lines'][0]['members']} members, chat rate swept")
        rows = [row for line in a["lines"] for row in sweep_rows(line["server"], line)]
        out.append(table(SWEEP_HEADERS, rows))
        for line in a["lines"]:
            out.append(f"  {line['server']}: stopped after the last step: {line['stopped']}")
    if "b" in scenarios:
        b = scenarios["b"]
        out.append(
            f"\n(b) {b['rooms']} rooms x {b['members']} members, seeks by each creator + chat "
            f"({b['chat_share']:g} chat per seek); room events delivered to all {b['members']}"
        )
        rows = []
        for step in b["steps"]:
            seek, chat = step["kinds"]["seek"], step["kinds"]["chat"]
            rows.append(
                [
                    seek["sends_per_s"],
                    chat["sends_per_s"],
                    seek["delivered_ratio"],
                    seek["p50_ms"],
                    seek["p99_ms"],
                    chat["p50_ms"],
                    chat["p99_ms"],
                    seek["lost"] + chat["lost"],
                    step["server_cpu_pct"],
                    step["server_cpu_us_per_delivery"],
                    step["loadgen_cpu_pct"],
                    "yes" if step["valid"] else "INVALID",
                ]  # fmt: skip
            )
        headers = [
            "seeks/s", "chats/s", "seek ratio", "seek p50", "seek p99", "chat p50", "chat p99",
            "lost", "srv CPU %", "srv µs/deliv", "loadgen CPU %", "valid",
        ]  # fmt: skip
        out.append(table(headers, rows))
        out.append(
            f"  {b['rooms']:,} of {b['rooms_asked']:,} rooms had all their sockets open after "
            f"{b['open_s']:.1f} s and were used; stopped: {b['stopped']}"
        )
    if "c" in scenarios:
        c = scenarios["c"]
        out.append(f"\n(c) {c['sockets']:,} idle sockets on one server")
        rows = [
            [
                line["server"],
                line["sockets"],
                line["open_s"],
                line["open_per_s"],
                line["server_rss_before_mb"],
                line["server_rss_after_mb"],
                line["server_kib_per_socket"],
                line["server_idle_cpu_pct"],
                line["loadgen_kib_per_socket"],
            ]  # fmt: skip
            for line in c["lines"]
        ]
        headers = [
            "server", "sockets", "open s", "opened/s", "RSS before MB", "RSS after MB",
            "KiB/socket", "idle CPU %", "loadgen KiB/socket",
        ]  # fmt: skip
        out.append(table(headers, rows))
        for line in c["lines"]:
            if line.get("note") or line["sockets"] < line["asked"]:
                out.append(
                    f"  {line['server']}: {line['sockets']:,} of {line['asked']:,} sockets open"
                    + (f"; {line['note']}" if line.get("note") else "")
                )
    if "d" in scenarios:
        d = scenarios["d"]
        restart = d["restart"]
        out.append(f"\n(d) watch party: {d['guests']:,} guests, {d['batch']} at a time")
        out.append(
            f"  join: {d['joined']:,} holding a snapshot after {d['join_s']:.1f} s; "
            f"{d['held_connected']:,} still connected after {d['held_s']:.0f} s; closes "
            f"1013: {d['join_closes']['1013']}, other: {d['join_closes']['other']}"
        )
        out.append(
            f"  restart: old node gone after {restart['old_node_stopped_s']:.1f} s, new one up "
            f"after {restart['new_node_up_s']:.1f} s, {restart['back']:,} back with a snapshot "
            f"after {restart['all_back_s']:.1f} s ({restart['all_back_after_up_s']:.1f} s after "
            f"the node was up); closes 1013: {restart['closes']['1013']}, other: "
            f"{restart['closes']['other']} {restart['closes']['by_code']}"
        )
        out.append(
            f"  server CPU during the join {d['join_server_cpu_pct']:.0f} %, loadgen CPU "
            f"{d['join_loadgen_cpu_pct']:.0f} %; accept-queue overflows: join "
            f"{d['join_listen_overflows']}, restart {restart['listen_overflows']}"
        )
    if "e" in scenarios:
        e = scenarios["e"]
        out.append("\n(e) two nodes + Redis (node 1 on CPU 0, node 2 on CPU 1, loadgen on both)")
        rows = sweep_rows("2 nodes, split", e["two_nodes"])
        rows += sweep_rows("1 node (cluster)", e["one_node"])
        out.append(table(SWEEP_HEADERS, rows))
    out.append("\n" + targets(results))
    return "\n".join(out)


def targets(results: dict[str, Any]) -> str:
    """The figures issue 7 asks for, one line each."""
    s = results["scenarios"]
    lines = ["targets (issue 7):"]
    if "a" in s:
        a = s["a"]
        for line in a["lines"]:
            near = line["at_reference_load"]
            flag = (
                " (a floor: the load generator passed 85 % first)"
                if line.get("saturation_is_floor")
                else ""
            )
            lines.append(
                f"  (a) {line['server']}: {line['saturation_per_s']:,.0f} deliveries/s at "
                f"saturation{flag}, {fmt(line['saturation_cpu_us_per_delivery'])} µs CPU per "
                f"delivery; at {near['offered_per_s']:,.0f}/s p50 {fmt(near['p50_ms'])} ms, "
                f"p99 {fmt(near['p99_ms'])} ms; loadgen CPU max {line['loadgen_cpu_max_pct']:.0f} %"
            )
        lines.append(f"ratio to stock Channels: {a['ratio_to_stock_channels']:.2f}")
        lines.append(f"ratio to websockets.broadcast: {a['ratio_to_websockets']:.2f}")
    if "b" in s:
        at = s["b"]["at_1000_seeks"]
        if at["seeks_per_s"] != 1000:
            lines.append(
                f"  (b) 1,000 seeks/s not measured: the steps stopped at {at['seeks_per_s']:,.0f} "
                f"seeks/s ({s['b']['stopped']}); the figures there:"
            )
        lines.append(
            f"  (b) at {at['seeks_per_s']:,.0f} seeks/s in all: seek-to-delivery p50 "
            f"{fmt(at['seek_p50_ms'])} ms, p99 {fmt(at['seek_p99_ms'])} ms (chat p99 "
            f"{fmt(at['chat_p99_ms'])} ms), delivered {fmt(at['delivered_ratio'], 3)} of offered"
            + ("" if at["valid"] else " INVALID (loadgen)")
        )
    if "c" in s:
        for line in s["c"]["lines"]:
            lines.append(
                f"  (c) {line['server']}: {line['server_kib_per_socket']:.1f} KiB RSS per idle "
                f"socket ({line['sockets']:,} sockets)"
            )
    if "d" in s:
        d = s["d"]
        lines.append(
            f"  (d) {d['joined']:,} joined and holding a snapshot in {d['join_s']:.1f} s; closes "
            f"1013: {d['join_closes']['1013'] + d['restart']['closes']['1013']}, other (incl. "
            f"the restart's 1012): {d['join_closes']['other'] + d['restart']['closes']['other']}; "
            f"all back after the restart in {d['restart']['all_back_s']:.1f} s"
        )
    if "e" in s:
        e = s["e"]
        lines.append(
            f"  (e) cross-node p50 {fmt(e['cross_node_p50_ms'])} ms (same node "
            f"{fmt(e['same_node_p50_ms'])} ms); two nodes {e['two_nodes']['saturation_per_s']:,.0f}"
            f" deliveries/s vs one node {e['one_node']['saturation_per_s']:,.0f} "
            f"(x{e['two_over_one']:.2f})"
        )
        if "a" in s:
            single = s["a"]["lines"][0]["saturation_per_s"]
            lines.append(
                f"      vs single-node mode in (a): x{e['two_nodes']['saturation_per_s'] / single:.2f}"
            )
    return "\n".join(lines)


def nan_if_none(value: float | None) -> float:
    """Missing figures as NaN, which matplotlib leaves out of a line."""
    return float("nan") if value is None else value


def plot(results: dict[str, Any], path: Path) -> bool:
    """Latency p50/p99 and deliveries against offered load, one line per server; False when
    there is no sweep to plot."""
    curves: list[tuple[str, dict[str, Any]]] = []
    s = results["scenarios"]
    if "a" in s:
        curves += [(line["server"], line) for line in s["a"]["lines"]]
    if "e" in s:
        curves += [("SyncTV 2 nodes (e)", s["e"]["two_nodes"]), ("SyncTV 1 node, cluster (e)", s["e"]["one_node"])]  # fmt: skip
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, delivered) = plt.subplots(1, 2, figsize=(14, 5.5))
    for number, (label, sweep) in enumerate(curves):
        colour = f"C{number}"
        steps = [step["kinds"]["chat"] for step in sweep["steps"]]
        offered = [step["offered_per_s"] for step in steps]
        latency.plot(offered, [nan_if_none(step["p50_ms"]) for step in steps], "-o", color=colour, label=f"{label} p50")  # fmt: skip
        latency.plot(offered, [nan_if_none(step["p99_ms"]) for step in steps], "--x", color=colour, label=f"{label} p99")  # fmt: skip
        delivered.plot(offered, [step["delivered_per_s"] for step in steps], "-o", color=colour, label=label)  # fmt: skip
    invalid = [
        (step["kinds"]["chat"]["offered_per_s"], step["kinds"]["chat"]["delivered_per_s"])
        for _, sweep in curves
        for step in sweep["steps"]
        if not step["valid"]
    ]
    if invalid:
        delivered.scatter(
            *zip(*invalid, strict=True), s=120, facecolors="none", edgecolors="black",
            label="invalid: loadgen over 85 % CPU", zorder=3,
        )  # fmt: skip
    top = max(step["kinds"]["chat"]["offered_per_s"] for _, sweep in curves for step in sweep["steps"])  # fmt: skip
    bottom = min(step["kinds"]["chat"]["offered_per_s"] for _, sweep in curves for step in sweep["steps"])  # fmt: skip
    delivered.plot([bottom, top], [bottom, top], ":", color="grey", label="delivered = offered")
    for axes in (latency, delivered):
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("offered deliveries/s (sends/s x members)")
        axes.grid(True, which="both", alpha=0.3)
    latency.set_ylabel("latency, send to receipt (ms)")
    latency.set_title("latency against offered load")
    delivered.set_ylabel("delivered/s")
    delivered.set_title("deliveries against offered load")
    latency.legend(fontsize=7)
    delivered.legend(fontsize=7)
    figure.suptitle(f"SyncTV bench, {results['mode']} run {results['started_at']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write(results: dict[str, Any], stamp: str) -> list[Path]:
    """The JSON and the plot, each with its `latest-` copy; the paths written."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    mode = results["mode"]
    written = []
    data = RESULTS / f"{stamp}-{mode}.json"
    data.write_text(json.dumps(results, indent=1) + "\n")
    written.append(data)
    picture = RESULTS / f"{stamp}-{mode}.png"
    if plot(results, picture):
        written.append(picture)
    for path in list(written):
        latest = RESULTS / f"latest-{mode}{path.suffix}"
        shutil.copyfile(path, latest)
        written.append(latest)
    return written
