"""README's worked example, run line by line: an image folder plus a CSV of frame times becomes a
video-ordered `custom` stream."""

import csv
import io
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from streamssl.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- tests/ingest/test_columns_readme.py runs the lines of this block -->"


def readme_commands() -> list[list[str]]:
    text = README.read_text()
    block = text[text.index(MARKER):].split("```")[1]
    return [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("streamssl ")]


def write_frames(root: Path) -> None:
    """frames/<class>/<clip>_<frame>.png: clip1 films the cup, clip2 the ball; frame_times.csv lists
    every frame's time, which file names alone do not give in order."""
    rng = np.random.default_rng(0)
    rows = []
    for obj, clip, start in (("cup", "clip1", 0.0), ("ball", "clip2", 4.0)):
        (root / "frames" / obj).mkdir(parents=True)
        times = start + rng.permutation(12) * 0.35  # frame numbers are not in time order
        for i, t in enumerate(times):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, format="PNG")
            (root / "frames" / obj / f"{clip}_{i:03d}.png").write_bytes(buf.getvalue())
            rows.append({"id": f"{obj}/{clip}_{i:03d}.png", "video": clip, "time_s": round(float(t), 2)})
    with open(root / "frame_times.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "video", "time_s"])
        writer.writeheader()
        writer.writerows(rows[::-1])  # file order means nothing either


def test_the_readme_example_builds_a_video_ordered_stream(ray_local, tmp_path, monkeypatch, capsys):
    commands = readme_commands()
    assert [c[0] for c in commands] == ["prepare", "columns", "stream"]
    write_frames(tmp_path)
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        assert main(argv) == 0, argv
    out = capsys.readouterr()
    assert "match no sample" not in out.err  # every frame, the held-out test ones too, found its row
    index = pd.read_parquet(tmp_path / "streams/video/index.parquet")
    manifest = pd.read_parquet(tmp_path / "data/frames/manifest.parquet").set_index("key")
    order = manifest.loc[index["key"], ["video", "time_s"]]
    assert list(order.itertuples(index=False)) == sorted(order.itertuples(index=False))
    assert order["video"].iloc[0] == "clip1" and order["video"].iloc[-1] == "clip2"
    assert len(index) == len(manifest) > 0
