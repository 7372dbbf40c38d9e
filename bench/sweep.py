"""One measured step (streams sent at fixed rates, then drained) and the rate sweep of steps.

A step's figures: offered and delivered frames per second, the ratio of the two, the latency
of the sampled sockets, the server's CPU (per second and per delivery, from /proc) and the
load generator's own CPU. A step where the load generator passed LOADGEN_CPU_LIMIT % is
marked invalid: it measured the load generator, not the server.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from bench.context import say
from bench.driver import LoadGen
from bench.procs import cpu_seconds

LOADGEN_CPU_LIMIT = 85.0
STOP_RATIO = 0.90  # a sweep ends at the first step delivering under 90 % of what it offered
STOP_P99_MS = 5000.0
REFERENCE_LOAD = 1000.0  # deliveries/s at which the sweep's latency is reported
FRAME_KINDS = {"chat": "chat", "seek": "playback"}


@dataclass
class Stream:
    """Frames of one kind sent round-robin by `senders` (socket indexes) at `rate` per second,
    each delivered to `fanout` sockets."""

    kind: str  # "chat" or "seek"
    rate: float
    senders: list[int]
    fanout: int

    def as_command(self) -> dict[str, Any]:
        """The stream as the load generator's `run` wants it."""
        return {
            "kind": self.kind,
            "rate": self.rate,
            "senders": self.senders,
            "fanout": self.fanout,
        }


async def measure_step(
    loadgen: LoadGen,
    group: str,
    streams: list[Stream],
    seconds: float,
    server_pids: list[int],
    drain_timeout: float = 15.0,
) -> dict[str, Any]:
    """Send `streams` for `seconds`, drain, and return the step's figures."""
    before = {pid: cpu_seconds(pid) for pid in server_pids}
    started = time.perf_counter()
    answer = await loadgen.call(
        "run",
        group=group,
        seconds=seconds,
        streams=[stream.as_command() for stream in streams],
        drain_timeout=drain_timeout,
    )
    wall = time.perf_counter() - started
    server_cpu = {str(pid): cpu_seconds(pid) - before[pid] for pid in server_pids}
    delivery_secs = answer["delivery_seconds"]
    kinds: dict[str, Any] = {}
    for kind in sorted({stream.kind for stream in streams}):
        frame = FRAME_KINDS[kind]
        # What was sent (rate x seconds, rounded up), over the window it was sent in.
        offered = answer["expected"][frame] / answer["seconds"]
        received = answer["received"][frame]
        delivered = received / delivery_secs if delivery_secs else 0.0
        latency = answer["latency_all"].get(kind, {})
        kinds[kind] = {
            "sends_per_s": sum(s.rate for s in streams if s.kind == kind),
            "offered_per_s": round(offered, 1),
            "delivered_per_s": round(delivered, 1),
            "delivered_ratio": round(delivered / offered, 3) if offered else None,
            "expected": answer["expected"][frame],
            "received": received,
            "lost": answer["expected"][frame] - received,
            "p50_ms": latency.get("p50_ms"),
            "p90_ms": latency.get("p90_ms"),
            "p99_ms": latency.get("p99_ms"),
            "max_ms": latency.get("max_ms"),
            "samples": latency.get("n", 0),
        }
    received_all = sum(answer["received"].values())
    cpu_total = sum(server_cpu.values())
    return {
        "seconds": answer["seconds"],
        "delivery_seconds": delivery_secs,
        "drain_seconds": answer["drain_seconds"],
        "kinds": kinds,
        "latency_by_label": answer["latency"],
        "server_cpu_s": {pid: round(cpu, 3) for pid, cpu in server_cpu.items()},
        "server_cpu_pct": round(cpu_total / wall * 100, 1),
        "server_cpu_us_per_delivery": round(cpu_total / received_all * 1e6, 1)
        if received_all
        else None,
        "loadgen_cpu_pct": answer["loadgen_cpu_pct"],
        "valid": answer["loadgen_cpu_pct"] <= LOADGEN_CPU_LIMIT,
        "connected": answer["connected"],
        "closes": answer["closes"],
    }


def stop_reason(step: dict[str, Any], kind: str, members: int) -> str | None:
    """Why the sweep ends after this step, or None to go on."""
    figures = step["kinds"][kind]
    if not step["valid"]:
        return f"load generator at {step['loadgen_cpu_pct']:.0f} % CPU (step invalid)"
    if figures["delivered_ratio"] is not None and figures["delivered_ratio"] < STOP_RATIO:
        return f"delivered {figures['delivered_ratio'] * 100:.0f} % of offered"
    if figures["p99_ms"] is not None and figures["p99_ms"] > STOP_P99_MS:
        return f"p99 {figures['p99_ms']:.0f} ms"
    if step["connected"] < members:
        return f"{members - step['connected']} sockets closed"
    return None


async def sweep(
    loadgen: LoadGen,
    group: str,
    rates: list[float],
    senders: list[int],
    members: int,
    seconds: float,
    server_pids: list[int],
) -> dict[str, Any]:
    """Chat at each rate in turn until a stop reason; the steps and the sweep's summary."""
    steps: list[dict[str, Any]] = []
    reason = "every rate of the sweep was delivered"
    for rate in rates:
        stream = Stream("chat", rate, senders, members)
        step = await measure_step(loadgen, group, [stream], seconds, server_pids)
        steps.append(step)
        chat = step["kinds"]["chat"]
        say(
            f"{rate:g} sends/s: {chat['delivered_per_s']:,.0f} of {chat['offered_per_s']:,.0f} "
            f"deliveries/s, p99 {chat['p99_ms']} ms, server CPU {step['server_cpu_pct']:.0f} %, "
            f"loadgen CPU {step['loadgen_cpu_pct']:.0f} %"
        )
        found = stop_reason(step, "chat", members)
        if found is not None:
            reason = found
            break
    return {"steps": steps, "stopped": reason, **summarize(steps, "chat")}


def nearest_step(steps: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The step whose offered load was closest to REFERENCE_LOAD deliveries/s."""
    return min(
        steps,
        key=lambda step: abs(math.log(step["kinds"][kind]["offered_per_s"] / REFERENCE_LOAD)),
    )


def summarize(steps: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """Saturation (most deliveries/s in a valid step) and the latency near REFERENCE_LOAD/s."""
    valid = [step for step in steps if step["valid"]] or steps
    best = max(valid, key=lambda step: step["kinds"][kind]["delivered_per_s"])
    near = nearest_step(steps, kind)
    return {
        "saturation_per_s": best["kinds"][kind]["delivered_per_s"],
        "saturation_valid": best["valid"],
        # The sweep ended on the load generator's CPU: the server may have had more to give.
        "saturation_is_floor": not steps[-1]["valid"],
        "saturation_cpu_us_per_delivery": best["server_cpu_us_per_delivery"],
        "saturation_loadgen_cpu_pct": best["loadgen_cpu_pct"],
        "at_reference_load": {
            "offered_per_s": near["kinds"][kind]["offered_per_s"],
            "p50_ms": near["kinds"][kind]["p50_ms"],
            "p99_ms": near["kinds"][kind]["p99_ms"],
        },
        "loadgen_cpu_max_pct": max(step["loadgen_cpu_pct"] for step in steps),
    }
