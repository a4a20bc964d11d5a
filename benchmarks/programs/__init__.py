"""Programs the benchmarks run in a process of their own (often by another interpreter: the dlib-bin
venv), kept as files so that ruff and mypy check them. Each is run by path: `python FILE ARGS`."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
RSS_WRAPPER = str(HERE / "rss_wrapper.py")
FR_LOOP = str(HERE / "fr_loop.py")
PIPELINE_LOOP = str(HERE / "pipeline_loop.py")
ENCODER_PROBE = str(HERE / "encoder_probe.py")
PNG_PEAK = str(HERE / "png_peak.py")
