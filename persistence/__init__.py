"""The parameter-hash result cache, artifacts, and the append-only event log with snapshots."""
