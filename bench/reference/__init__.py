"""Reference servers the benchmark harness measures SyncTV against (bench/README.md)."""
