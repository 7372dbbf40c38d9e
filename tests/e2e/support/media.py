"""Test media made with ffmpeg (once per run, a few seconds) and the process that serves it.

The clips are small (320x180, 25 fps) with a keyframe every second, so a seek lands on a
keyframe at most one second away, and carry a sine audio track, so autoplay policies apply
to them as to a real film.

| file | what |
|---|---|
| `clip.webm` | 60 s, VP9 + Opus, ffmpeg's `testsrc` (its counter shows the second), 440 Hz |
| `clip2.webm` | 40 s, VP9 + Opus, `testsrc2` (another picture), 660 Hz |
| `hls/index.m3u8` | 60 s VOD, 2 s MPEG-TS segments, H.264 baseline + AAC-LC (hls.js remuxes to fMP4) |
| `subs.vtt` | WebVTT, a cue every 2 s for the whole 60 s: "Cue 1" at 0-2 s, ..., "Cue 30" |
| `blank.html` | an empty page on the media server's origin, for tests that build their own page |
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import HOST, START_TIMEOUT, ManagedProcess, ProcessFailed

FFMPEG = "ffmpeg"
FPS = 25
SIZE = "320x180"
KEYFRAME_EVERY = FPS  # frames: one keyframe a second
MEDIA_TIMEOUT = 60.0
MEDIA_SERVER_SCRIPT = Path(__file__).with_name("media_server.py")


@dataclass(frozen=True)
class MediaSet:
    """The generated files: `directory` and the names (relative paths) inside it."""

    directory: Path
    clip: str = "clip.webm"
    clip2: str = "clip2.webm"
    hls: str = "hls/index.m3u8"
    subs: str = "subs.vtt"
    blank: str = "blank.html"
    clip_seconds: float = 60.0
    clip2_seconds: float = 40.0
    hls_seconds: float = 60.0
    cue_seconds: float = 2.0

    def path(self, name: str) -> Path:
        """The file `name` on disk."""
        return self.directory / name

    @property
    def cue_count(self) -> int:
        """How many cues `subs.vtt` holds."""
        return int(self.clip_seconds // self.cue_seconds)


def _lavfi_inputs(picture: str, seconds: float, tone_hz: int) -> list[str]:
    return [
        *("-f", "lavfi", "-i", f"{picture}=size={SIZE}:rate={FPS}:duration={seconds:g}"),
        *("-f", "lavfi", "-i", f"sine=frequency={tone_hz}:sample_rate=48000:duration={seconds:g}"),
    ]


def _webm_argv(output: Path, picture: str, seconds: float, tone_hz: int) -> list[str]:
    # VP9 in realtime mode encodes a minute in about two seconds on one core (VP8 takes twice that).
    return [
        *(FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"),
        *_lavfi_inputs(picture, seconds, tone_hz),
        *("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1"),
        *("-b:v", "200k", "-pix_fmt", "yuv420p"),
        *("-g", str(KEYFRAME_EVERY), "-keyint_min", str(KEYFRAME_EVERY)),
        *("-c:a", "libopus", "-b:a", "48k"),
        *("-t", f"{seconds:g}", str(output)),
    ]


def _hls_argv(playlist: Path, seconds: float, tone_hz: int) -> list[str]:
    return [
        *(FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"),
        *_lavfi_inputs("testsrc", seconds, tone_hz),
        *(
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-profile:v",
            "baseline",
            "-pix_fmt",
            "yuv420p",
        ),
        *("-g", str(KEYFRAME_EVERY), "-keyint_min", str(KEYFRAME_EVERY), "-sc_threshold", "0"),
        *("-c:a", "aac", "-b:a", "64k", "-ac", "2", "-ar", "48000"),
        *("-t", f"{seconds:g}", "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod"),
        *("-hls_flags", "independent_segments"),
        *("-hls_segment_filename", str(playlist.parent / "seg%02d.ts"), str(playlist)),
    ]


def _timestamp(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"00:{int(minutes):02d}:{rest:06.3f}"


def webvtt(cue_seconds: float, count: int) -> str:
    """A WebVTT file with `count` back-to-back cues "Cue 1", "Cue 2", ... of `cue_seconds` each."""
    blocks = ["WEBVTT\n"]
    for index in range(count):
        start, end = index * cue_seconds, (index + 1) * cue_seconds
        blocks.append(f"{index + 1}\n{_timestamp(start)} --> {_timestamp(end)}\nCue {index + 1}\n")
    return "\n".join(blocks)


BLANK_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>e2e media</title>"
    '<link rel="icon" href="data:,"></head><body></body></html>\n'
)


def generate_media(directory: Path) -> MediaSet:
    """Make every test file in `directory` (ffmpeg runs the three encodes side by side)."""
    media = MediaSet(directory=directory)
    media.path(media.hls).parent.mkdir(parents=True, exist_ok=True)
    jobs = {
        media.clip: _webm_argv(media.path(media.clip), "testsrc", media.clip_seconds, 440),
        media.clip2: _webm_argv(media.path(media.clip2), "testsrc2", media.clip2_seconds, 660),
        media.hls: _hls_argv(media.path(media.hls), media.hls_seconds, 550),
    }
    running = {
        name: subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for name, argv in jobs.items()
    }
    media.path(media.subs).write_text(webvtt(media.cue_seconds, media.cue_count), "utf-8")
    media.path(media.blank).write_text(BLANK_PAGE, "utf-8")
    failures = []
    for name, process in running.items():
        try:
            _, errors = process.communicate(timeout=MEDIA_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            _, errors = process.communicate()
        if process.returncode != 0:
            failures.append(f"{name}: ffmpeg exited with {process.returncode}: {errors.decode()}")
    if failures:
        raise RuntimeError("could not make the test media:\n" + "\n".join(failures))
    return media


class MediaServer(ManagedProcess):
    """`media_server.py` serving one directory on 127.0.0.1 (port chosen by the OS)."""

    def __init__(self, root: Path, log_dir: Path) -> None:
        self.root = root
        self.port_file = log_dir / "media-server.port"
        self.port: int | None = None
        super().__init__(
            [
                *(sys.executable, str(MEDIA_SERVER_SCRIPT)),
                *("--root", str(root), "--host", HOST, "--port-file", str(self.port_file)),
            ],
            log_dir / "media-server.log",
        )

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` (no trailing slash)."""
        if self.port is None:
            raise ProcessFailed("the media server has not started")
        return f"http://{HOST}:{self.port}"

    def url(self, name: str) -> str:
        """The address of the file `name` (relative to the root)."""
        return f"{self.base_url}/{name}"

    def start(self, timeout: float = START_TIMEOUT) -> MediaServer:
        """Launch and wait until the port file is written."""
        self.port_file.unlink(missing_ok=True)
        super().start()
        self.wait_until(self.port_file.exists, timeout, "the port file")
        self.port = int(self.port_file.read_text())
        return self
