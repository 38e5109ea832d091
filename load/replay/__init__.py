"""Launch-day replay: scenarios as data, a light HTTP driver, and a report.

`load.replay.scenario` reads a scenario file, `load.replay.model` turns it into arrival times,
patience and scaled settings (pure, no I/O), `load.replay.driver` plays it against a running
gateway (or straight at the booking site), and `load.replay.cli` ties it together as
`waitroom replay`. Nothing here imports locust: only `load/locustfile.py` does.
"""

from pathlib import Path

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
