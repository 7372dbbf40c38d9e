"""The soak with faults in 60 seconds (issue 8, point 3; docs/soak.md): `bench/soak.py`'s own
code with smaller numbers, and the same invariants as `make soak`'s 10 minutes.

Three real `manage.py serve` nodes (the third behind a TCP proxy to Redis), a real
`runworker synctv.jobs`, a real redis-server and the test database; 60 guests in 6 rooms
send commands at human rates while Redis is killed twice, frozen once, the proxied node cut
off once, and a node killed and another drained once each. Then every client must hold the
database's playback, playlist and chat, no acknowledged command may be missing from the
database, and no chat id may have reached one connection twice.
"""

from __future__ import annotations

import pytest

from bench.soak import SoakConfig, run_soak
from bench.soak_chaos import FAULT_KINDS
from bench.soak_report import print_report
from tests.support.servers import database_url

pytestmark = pytest.mark.serve


@pytest.mark.timeout(180)
async def test_a_minute_of_faults_loses_no_acknowledged_command_and_ends_on_the_database_state(
    transactional_db, tmp_path
):
    report = await run_soak(
        SoakConfig(
            duration=60.0,
            clients=60,
            rooms=6,
            session=(20.0, 50.0),
            quiet=10.0,
            database_url=database_url(),
            prepare_database=False,
            workdir=tmp_path,
        )
    )
    print_report(report)
    print(f"seed {report['config']['seed']}")

    assert set(report["faults_survived"]) == set(FAULT_KINDS), report["faults"]
    assert report["commands"]["acknowledged"] > 0
    assert report["commands"]["lost"] == 0, report["commands"]["lost_examples"]
    assert report["duplicates"]["count"] == 0, report["duplicates"]["examples"]
    assert report["clients"]["mismatched"] == 0, report["clients"]["mismatch_examples"]
    assert report["invariants"] == dict.fromkeys(report["invariants"], True)
