"""`streamssl stream` argument errors: exit 2 with one line naming the argument (no Ray started)."""

import pytest

from streamssl.cli import main


@pytest.mark.parametrize("extra, flag", [
    (["--kind", "zigzag"], "--kind"),
    (["--kind", "seq", "--samples-per-class", "1,2"], "--samples-per-class"),
    (["--kind", "seq", "--samples-per-class", "x"], "--samples-per-class"),
    (["--kind", "seq", "--label-column", "fine"], "--label-column"),
    (["--kind", "seq", "--label-column", "label_name"], "--label-column"),
    (["--kind", "custom", "--order-by", "nope"], "--order-by"),
    (["--kind", "custom", "--order-by", "key"], "--order-by"),
    (["--kind", "seq", "--order-by", "difficulty"], "--order-by"),
    (["--kind", "seq", "--class-order", "/no/such/file"], "--class-order"),
    (["--kind", "seq-bl", "--blend-ratio", "2"], "--blend-ratio"),
])
def test_bad_arguments_exit_2_naming_the_argument(tiny_dataset, tmp_path, capsys, extra, flag):
    code = main(["stream", str(tiny_dataset), "--out", str(tmp_path / "s"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and flag in err


def test_bad_class_order_file_and_missing_dataset(tiny_dataset, tmp_path, capsys):
    order = tmp_path / "order.txt"
    order.write_text("c1\nc0\nzebra\n")
    assert main(["stream", str(tiny_dataset), "--kind", "seq", "--class-order", str(order),
                 "--out", str(tmp_path / "s")]) == 2
    assert "zebra" in capsys.readouterr().err
    assert main(["stream", str(tmp_path / "missing"), "--kind", "seq", "--out", str(tmp_path / "s")]) == 2
    assert "DATASET_DIR" in capsys.readouterr().err
