"""Sensor inputs: depth/thermal maps as single-channel images and IMU series from CSV, .npy and arrays."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from omnivec.errors import MediaError
from omnivec.media.sensors import load_imu, load_single_channel, to_sensor_media


def load_map(item, modality="depth"):
    return load_single_channel(to_sensor_media(item, 0, modality))


def test_16_bit_png_and_tiff_keep_their_full_range(tmp_path):
    values = np.array([[0, 1000, 65535], [30000, 7, 12345]], np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    Image.fromarray(values).save(tmp_path / "d.tif")
    for name in ("d.png", "d.tif"):
        got = load_map(tmp_path / name)
        assert got.dtype == np.float32 and got.shape == (2, 3)
        np.testing.assert_allclose(got, values / 65535.0, rtol=0, atol=1e-7)


def test_8_bit_float_and_colour_maps(tmp_path):
    grey = np.array([[0, 128, 255]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "t.png")
    np.testing.assert_allclose(load_map(tmp_path / "t.png", "thermal"), grey / 255.0, atol=1e-7)
    metres = np.array([[0.5, 2.25], [8.0, 0.0]], np.float32)
    Image.fromarray(metres).save(tmp_path / "f.tif")  # float TIFF ("F" mode): values kept as they are
    np.testing.assert_array_equal(load_map(tmp_path / "f.tif"), metres)
    np.testing.assert_array_equal(load_map(metres[..., None]), metres)  # (H, W, 1) arrays too
    rgb = Image.new("RGB", (4, 3), (255, 0, 0))
    expected = np.asarray(rgb.convert("L"), np.float32) / 255.0
    rgb.save(tmp_path / "c.png")  # a colour rendering of a map: its luminance
    np.testing.assert_allclose(load_map(tmp_path / "c.png"), expected)


def test_bad_maps_name_the_item_and_the_cause(tmp_path):
    (tmp_path / "notes.txt").write_text("depth 1 2 3")
    with pytest.raises(MediaError, match="must be an image file") as e:
        to_sensor_media(tmp_path / "notes.txt", 0, "depth")
    assert e.value.item == str(tmp_path / "notes.txt")
    with pytest.raises(MediaError, match="must be 2-D"):
        load_map(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(MediaError, match="NaN"):
        load_map(np.array([[np.nan, 1.0]], np.float32))
    with pytest.raises(MediaError, match="data type"):
        load_map(np.zeros((2, 2), np.int64))
    with pytest.raises(MediaError, match="no such file"):
        to_sensor_media(tmp_path / "missing.png", 0, "thermal")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(MediaError, match="cannot decode depth map"):
        load_map(tmp_path / "broken.png")


def test_imu_from_csv_npy_and_arrays_agree(tmp_path):
    rs = np.random.RandomState(0)
    series = rs.randn(50, 6).astype(np.float32)
    (tmp_path / "h.csv").write_text("ax,ay,az,gx,gy,gz\n" + "\n".join(",".join(repr(float(v)) for v in r) for r in series))
    (tmp_path / "n.csv").write_text("\n".join(";".join(repr(float(v)) for v in r) for r in series) + "\n\n")
    np.save(tmp_path / "a.npy", series)
    np.save(tmp_path / "b.npy", series.T.copy())
    for item in (tmp_path / "h.csv", tmp_path / "n.csv", tmp_path / "a.npy", str(tmp_path / "b.npy"), series,
                 series.T, (tmp_path / "a.npy").read_bytes()):
        got = load_imu(to_sensor_media(item, 0, "imu"))
        assert got.shape == (6, 50) and got.dtype == np.float32
        np.testing.assert_array_equal(got, series.T)


def test_bad_imu_inputs_say_why(tmp_path):
    cases = {
        "cols.csv": ("1,2,3,4,5,6,7\n8,9,10,11,12,13,14\n", "6 channels"),
        "ragged.csv": ("1,2,3,4,5,6\n1,2,3\n", "different numbers of columns"),
        "word.csv": ("1,2,3,4,5,6\n1,2,x,4,5,6\n", "row 2 is not numeric"),
        "empty.csv": ("ax,ay,az,gx,gy,gz\n", "no samples"),
    }
    for name, (text, cause) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(MediaError, match=cause) as e:
            load_imu(to_sensor_media(tmp_path / name, 0, "imu"))
        assert e.value.item == str(tmp_path / name)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(MediaError, match="cannot read .npy"):  # pickled objects are never loaded
        load_imu(to_sensor_media(tmp_path / "obj.npy", 0, "imu"))
    with pytest.raises(MediaError, match="CSV file or a .npy"):
        to_sensor_media(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 0, "imu")
    with pytest.raises(MediaError, match="NaN"):
        load_imu(to_sensor_media(np.full((10, 6), np.inf), 0, "imu"))
