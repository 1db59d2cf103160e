"""Readers: exact values on synthetic DICOM / PNG / NumPy inputs, the real pydicom files, and
an InputError naming the file for everything unreadable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ehrtext.errors import InputError
from ehrtext.imaging.readers import (
    WINDOW_PRESETS,
    DicomReader,
    NumpyReader,
    PILReader,
    apply_window,
    array_to_image,
    read_image,
    reader_for,
)
from tests.imaging.conftest import DATA, write_dicom, write_png

# ---- synthetic DICOM ------------------------------------------------------------------------


def test_rescale_slope_intercept_applied_exactly(tmp_path: Path) -> None:
    stored = np.array([[0, 100], [1000, 2000]], dtype=np.int16)
    path = write_dicom(tmp_path / "ct.dcm", stored, slope=2, intercept=-1024)
    img = read_image(path)
    np.testing.assert_array_equal(img.array[0], stored * 2.0 - 1024)
    assert img.meta["rescale"] == (2.0, -1024.0)
    assert img.value_range == (-1024.0, 2976.0)  # the data range when there is no window
    raw = read_image(path, rescale=False)
    np.testing.assert_array_equal(raw.array[0], stored.astype(np.float32))


def test_window_clipping_values_exact(tmp_path: Path) -> None:
    # HU after rescale (slope 1, intercept -1024): -1024, -600, 0, 500
    stored = np.array([[0, 424], [1024, 1524]], dtype=np.int16)
    path = write_dicom(tmp_path / "ct.dcm", stored, slope=1, intercept=-1024)
    lung = read_image(path, window="lung").array[0]  # centre -600, width 1500: [-1350, 150]
    expected = np.clip((np.array([[-1024, -600], [0, 500]]) + 1350) / 1500, 0, 1)
    np.testing.assert_allclose(lung, expected, rtol=0, atol=1e-6)
    assert lung[0, 1] == pytest.approx(0.5)  # the centre maps to 0.5
    assert lung[1, 1] == 1.0  # above the window: clipped
    custom = read_image(path, window=(0, 100)).array[0]  # [-50, 50]
    np.testing.assert_array_equal(custom, [[0.0, 0.0], [0.5, 1.0]])
    brain = read_image(path, window="brain")
    assert brain.meta["window"] == WINDOW_PRESETS["brain"]
    assert brain.value_range == (0.0, 1.0)


def test_every_preset_is_centre_half(tmp_path: Path) -> None:
    for name, (center, width) in WINDOW_PRESETS.items():
        stored = np.array([[center + 1024, center + 1024 - width]], dtype=np.int16)
        path = write_dicom(tmp_path / f"{name}.dcm", stored, slope=1, intercept=-1024)
        out = read_image(path, window=name).array[0, 0]
        assert out[0] == pytest.approx(0.5) and out[1] == 0.0, name


def test_file_window_is_used_and_absent_window_means_none(tmp_path: Path) -> None:
    stored = np.array([[0, 50, 100]], dtype=np.int16)
    with_w = write_dicom(tmp_path / "w.dcm", stored, window=(50, 100))
    np.testing.assert_array_equal(read_image(with_w, window="file").array[0], [[0.0, 0.5, 1.0]])
    without = write_dicom(tmp_path / "n.dcm", stored)
    img = read_image(without, window="file")
    assert "window" not in img.meta
    np.testing.assert_array_equal(img.array[0], [[0, 50, 100]])


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    stored = np.array([[0, 100], [300, 400]], dtype=np.int16)
    m1 = write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1")
    m2 = write_dicom(tmp_path / "m2.dcm", stored, photometric="MONOCHROME2")
    a1, a2 = read_image(m1), read_image(m2)
    np.testing.assert_array_equal(a1.array[0], [[400, 300], [100, 0]])  # lo + hi - x
    np.testing.assert_array_equal(a2.array[0], stored)
    assert a1.meta["inverted"] and not a2.meta["inverted"]
    w1 = read_image(m1, window=(200, 400)).array[0]
    np.testing.assert_array_equal(w1, 1.0 - read_image(m2, window=(200, 400)).array[0])
    np.testing.assert_array_equal(w1, [[1.0, 0.75], [0.25, 0.0]])
    kept = read_image(m1, invert_monochrome1=False)
    np.testing.assert_array_equal(kept.array[0], stored)


def test_multiframe_frames_become_channels(tmp_path: Path) -> None:
    frames = np.stack([np.full((3, 4), v, np.int16) for v in (10, 20, 30)])
    path = write_dicom(tmp_path / "mf.dcm", frames, slope=1, intercept=-5)
    img = read_image(path)
    assert img.shape == (3, 3, 4) and img.meta["frames"] == 3
    np.testing.assert_array_equal(img.array[:, 0, 0], [5, 15, 25])
    second = read_image(path, frame=1)
    assert second.shape == (1, 3, 4) and float(second.array[0, 0, 0]) == 15
    with pytest.raises(InputError, match="frame 7"):
        read_image(path, frame=7)


def test_bad_window_arguments() -> None:
    with pytest.raises(InputError, match="unknown window"):
        DicomReader(window="liver")
    with pytest.raises(InputError, match="center, width"):
        DicomReader(window=(40, 0))
    with pytest.raises(InputError, match="positive"):
        apply_window(np.zeros(2), 0, 0)


# ---- real pydicom test files ----------------------------------------------------------------


def test_real_ct_small_hounsfield_units_match_pydicom() -> None:
    import pydicom
    from pydicom.pixels import apply_rescale

    path = DATA / "CT_small.dcm"
    ds = pydicom.dcmread(path)
    expected = apply_rescale(ds.pixel_array, ds)
    img = read_image(path)
    assert img.shape == (1, 128, 128)
    np.testing.assert_array_equal(img.array[0], expected.astype(np.float32))
    assert img.meta["rescale"] == (1.0, -1024.0) and img.meta["modality"] == "CT"
    lung = read_image(path, window="lung").array
    assert lung.min() >= 0 and lung.max() == 1.0 and 0 < lung.mean() < 1


def test_real_mr_small_file_window() -> None:
    import pydicom

    img = read_image(DATA / "MR_small.dcm", window="file")
    assert img.meta["window"] == (600.0, 1600.0)  # the file's WindowCenter / WindowWidth
    stored = pydicom.dcmread(DATA / "MR_small.dcm").pixel_array.astype(np.float64)
    expected = np.clip((stored - (600 - 800)) / 1600, 0, 1)
    np.testing.assert_allclose(img.array[0], expected, atol=1e-6)
    assert img.shape == (1, 64, 64) and img.array.max() == 1.0  # 2145 lies above the window


def test_real_multiframe_rtdose() -> None:
    img = read_image(DATA / "rtdose.dcm")
    assert img.shape == (15, 10, 10) and img.meta["frames"] == 15


def test_real_rgb_dicom_becomes_grey_with_8bit_range() -> None:
    img = read_image(DATA / "SC_rgb_small_odd.dcm")
    assert img.shape == (1, 3, 3) and img.value_range == (0.0, 255.0)


def test_real_truncated_and_undecodable_dicom_name_the_file() -> None:
    with pytest.raises(InputError, match=r"MR_truncated\.dcm: cannot decode"):
        read_image(DATA / "MR_truncated.dcm")
    with pytest.raises(InputError, match=r"JPEG-lossy\.dcm: cannot decode.*JPEG Extended"):
        read_image(DATA / "JPEG-lossy.dcm")


def test_truncated_copies_of_a_good_file(tmp_path: Path) -> None:
    data = (DATA / "CT_small.dcm").read_bytes()
    # the last cut falls inside the pixel data (CT_small ends with a few bytes after it)
    for cut in (100, 1000, len(data) // 2, len(data) - 1000):
        path = tmp_path / f"cut{cut}.dcm"
        path.write_bytes(data[:cut])
        with pytest.raises(InputError, match=f"cut{cut}.dcm"):
            read_image(path)


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.5"  # RT plan
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID = "X"
    ds.save_as(tmp_path / "plan.dcm", enforce_file_format=True)
    with pytest.raises(InputError, match="plan.dcm: DICOM file without pixel data"):
        read_image(tmp_path / "plan.dcm")


def test_dicom_without_suffix_is_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "IM0001"
    path.write_bytes((DATA / "MR_small.dcm").read_bytes())
    assert isinstance(reader_for(path), DicomReader)
    assert read_image(path).shape == (1, 64, 64)


# ---- PNG / JPEG / NumPy, and non-images -----------------------------------------------------


def test_png_8_and_16_bit(tmp_path: Path) -> None:
    a8 = np.array([[0, 51], [204, 255]], dtype=np.uint8)
    img = read_image(write_png(tmp_path / "a.png", a8))
    np.testing.assert_array_equal(img.array[0], a8)
    np.testing.assert_allclose(img.scaled()[0], [[0, 0.2], [0.8, 1.0]], atol=1e-7)
    a16 = np.array([[0, 1000], [30000, 65535]], dtype=np.uint16)
    img16 = read_image(write_png(tmp_path / "b.png", a16))
    np.testing.assert_array_equal(img16.array[0], a16)
    assert img16.value_range == (0.0, 65535.0)


def test_rgb_jpeg_becomes_grey(tmp_path: Path) -> None:
    from PIL import Image

    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=100)
    img = read_image(tmp_path / "c.jpg")
    assert img.shape == (1, 8, 8)
    assert abs(float(img.array.mean()) - 0.299 * 200) < 3  # luma of pure red


def test_text_file_named_png_and_truncated_png(tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image\n")
    with pytest.raises(InputError, match=r"notes\.png: not a readable image file"):
        read_image(fake)
    good = write_png(tmp_path / "good.png", np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8))
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError, match=r"cut\.png"):
        read_image(cut)
    with pytest.raises(InputError, match="no such image file"):
        read_image(tmp_path / "missing.png")
    other = tmp_path / "data.bin"
    other.write_bytes(b"\x00" * 300)
    with pytest.raises(InputError, match=r"data\.bin: unknown image format"):
        read_image(other)


def test_numpy_arrays_without_pickle(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.save(tmp_path / "a.npy", arr)
    img = read_image(tmp_path / "a.npy")
    np.testing.assert_array_equal(img.array[0], arr)
    assert img.value_range == (0.0, 255.0)
    np.savez(tmp_path / "b.npz", image=arr.astype(np.float32) / 10, mask=arr)
    img = read_image(tmp_path / "b.npz")
    assert img.value_range == (0.0, pytest.approx(1.1))
    assert NumpyReader(key="mask").read(tmp_path / "b.npz").value_range == (0.0, 255.0)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"obj\.npy: not a readable NumPy array"):
        read_image(tmp_path / "obj.npy")
    with pytest.raises(InputError, match="NaN"):
        array_to_image(np.array([[np.nan, 1.0]]))
    with pytest.raises(InputError, match="not a 2-D image"):
        array_to_image(np.zeros(5))


def test_reader_choice_by_suffix() -> None:
    assert isinstance(reader_for("x.DCM"), DicomReader)
    assert isinstance(reader_for("x.jpeg"), PILReader)
    assert isinstance(reader_for("x.npz"), NumpyReader)


# ---- real files: presets, MONOCHROME1, multi-frame, transfer syntaxes ------------------------


def test_real_ct_every_preset_matches_the_window_formula() -> None:
    import pydicom
    from pydicom.pixels import apply_rescale

    from ehrtext.imaging.readers import WINDOW_PRESETS

    ds = pydicom.dcmread(DATA / "CT_small.dcm")
    hu = apply_rescale(ds.pixel_array, ds).astype(np.float64)
    means = {}
    for name, (center, width) in WINDOW_PRESETS.items():
        got = read_image(DATA / "CT_small.dcm", window=name).array[0]
        expected = np.clip((hu - (center - width / 2)) / width, 0, 1)
        np.testing.assert_allclose(got, expected, atol=1e-6)
        means[name] = float(got.mean())
    # the same tissue is brighter in a window set lower: lung (-600) > mediastinum (40)
    assert means["lung"] > means["mediastinum"]
    custom = read_image(DATA / "CT_small.dcm", window=(0.0, 2000.0)).array[0]
    np.testing.assert_allclose(custom, np.clip((hu + 1000) / 2000, 0, 1), atol=1e-6)


def test_real_file_relabelled_monochrome1_is_the_inverse(tmp_path: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(DATA / "CT_small.dcm")
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "ct_m1.dcm")
    m1 = read_image(tmp_path / "ct_m1.dcm", window="lung")
    m2 = read_image(DATA / "CT_small.dcm", window="lung")
    assert m1.meta["inverted"] and not m2.meta["inverted"]
    np.testing.assert_allclose(m1.array, 1.0 - m2.array, atol=1e-6)
    raw1, raw2 = read_image(tmp_path / "ct_m1.dcm"), read_image(DATA / "CT_small.dcm")
    np.testing.assert_allclose(raw1.scaled(), 1.0 - raw2.scaled(), atol=1e-6)


def test_real_multiframe_values_match_pydicom_frame_by_frame() -> None:
    import pydicom

    ds = pydicom.dcmread(DATA / "rtdose.dcm")
    img = read_image(DATA / "rtdose.dcm")
    frames = ds.pixel_array.astype(np.float32)
    assert frames.shape == (15, 10, 10) and img.shape == frames.shape
    np.testing.assert_array_equal(img.array, frames)
    assert len({float(f.sum()) for f in img.array}) > 1  # the frames differ
    one = read_image(DATA / "rtdose.dcm", frame=7)
    np.testing.assert_array_equal(one.array[0], frames[7])


@pytest.mark.parametrize(
    ("variant", "original"),
    [("rtdose_expb.dcm", "rtdose.dcm"), ("rtdose_rle.dcm", "rtdose.dcm"),
     ("MR_small_RLE.dcm", "MR_small.dcm")],
)
def test_real_big_endian_and_rle_files_decode_like_the_original(variant: str, original: str) -> None:
    a, b = read_image(DATA / variant), read_image(DATA / original)
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.array, b.array)
