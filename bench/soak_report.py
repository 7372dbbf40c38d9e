"""The soak's report: a table on stdout and the JSON file under bench/results/.

Keys of the report: `passed`, `invariants` (name -> bool), `faults` (each with its start and
end in seconds from the run's start), `faults_survived` (by kind), `commands` (sent,
acknowledged, lost, errors, unanswered), `duplicates`, `clients` (mismatches with the
database), `connections` (reconnects, close codes), `staleness` (max and p99 seconds a client
held an older playback than the database's), `memory` (RSS per node incarnation), `config`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def print_report(report: dict[str, Any]) -> None:
    """The figures as a table, then what failed."""
    commands = report["commands"]
    staleness = report["staleness"]
    connections = report["connections"]
    rows = [
        ("faults survived", _by_kind(report["faults_survived"])),
        ("faults failed", str(sum(1 for fault in report["faults"] if "error" in fault))),
        ("commands sent", str(commands["sent"])),
        ("  acknowledged", str(commands["acknowledged"])),
        ("  refused (error)", _by_kind(commands["errors"]) or "0"),
        ("  unanswered (socket dropped)", str(commands["unanswered"])),
        ("  lost (must be 0)", str(commands["lost"])),
        ("chat delivered twice (must be 0)", str(report["duplicates"]["count"])),
        ("clients differing from the database", str(report["clients"]["mismatched"])),
        ("reconnects", str(connections["reconnects"])),
        ("  of which a viewer left and came back", str(connections["viewers_left_and_came_back"])),
        ("failed connection attempts", str(connections["failed_connects"])),
        ("close codes", _by_kind(connections["close_codes"])),
        ("unexpected closes", str(connections["unexpected_closes"])),
        ("stale playback: episodes", str(staleness["episodes"])),
        ("stale playback: max s", f"{staleness['max_s']:.3f}"),
        ("stale playback: p99 s", f"{staleness['p99_s']:.3f}"),
    ]
    width = max(len(label) for label, _ in rows)
    print()
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print()
    print(f"{'node':<8} {'#':>2} {'ended':<9} {'start MiB':>9} {'end MiB':>8} {'max MiB':>8} slope")
    for row in report["memory"]:
        slope = row.get("slope_mib_per_min")
        half = row.get("slope_second_half_mib_per_min")
        shown = "" if slope is None else f"{slope:+.2f} MiB/min (2nd half {half:+.2f})"
        print(
            f"{row['node']:<8} {row['incarnation']:>2} {row['ended']:<9} "
            f"{row['start_mib']:>9} {row['end_mib']:>8} {row['max_mib']:>8} {shown}"
        )
    print()
    for name, held in report["invariants"].items():
        print(f"{'ok  ' if held else 'FAIL'} {name}")
    for label, problems in report["clients"]["mismatch_examples"].items():
        print(f"  {label}: {'; '.join(problems)}")
    for lost in commands["lost_examples"]:
        print(f"  lost: {lost}")
    for duplicate in report["duplicates"]["examples"][:10]:
        print(f"  duplicate: {duplicate}")


def save_report(report: dict[str, Any], path: Path) -> Path:
    """Write the report as JSON; its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return path


def _by_kind(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))
