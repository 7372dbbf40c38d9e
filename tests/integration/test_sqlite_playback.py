"""Playback commands on the embedded default database (SQLite), as `make run` serves them.

The playback UPDATE is written in SQL (rooms/services/playback.py): this proves it means the
same on SQLite as on PostgreSQL, where the rest of the suite runs.
"""

import json
import subprocess
import sys

from tests.support.servers import REPO_ROOT, node_env

SCRIPT = """
import json, time
from rooms.services import accounts, playback, rooms
user = accounts.create_guest("ann")
room = rooms.create_room(user, "sqlite room")
states = [playback.change_playback(user, room.id, "play")]
time.sleep(0.3)
states.append(playback.change_playback(user, room.id, "rate", rate=2))
time.sleep(0.3)
states.append(playback.change_playback(user, room.id, "pause"))
states.append(playback.change_playback(user, room.id, "seek", position=12.5))
states.append(playback.current(room.id))
print(json.dumps(states))
"""


def test_play_rate_pause_and_seek_on_sqlite(tmp_path):
    env = node_env({"SYNCTV__DATABASE__URL": f"sqlite:///{tmp_path / 'synctv.sqlite3'}"})
    manage = [sys.executable, str(REPO_ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, cwd=tmp_path, check=True, timeout=120)
    done = subprocess.run(
        [*manage, "shell", "-c", SCRIPT],
        env=env,
        cwd=tmp_path,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )

    played, rated, paused, sought, stored = json.loads(done.stdout.splitlines()[-1])

    assert [s["version"] for s in (played, rated, paused, sought)] == [1, 2, 3, 4]
    assert played["playing"] is True and played["position"] == 0.0
    # Re-anchored at rate 1 after about 0.3 s, then moving at rate 2 for about 0.3 s more.
    assert rated["rate"] == 2.0 and 0.25 <= rated["position"] <= 1.0
    assert paused["playing"] is False and rated["position"] + 0.5 <= paused["position"] <= 3.0
    assert sought["position"] == 12.5 and sought["playing"] is False
    assert stored == sought
    every = (played, rated, paused, sought, stored)
    assert all(isinstance(s["position"], float) and isinstance(s["rate"], float) for s in every)
