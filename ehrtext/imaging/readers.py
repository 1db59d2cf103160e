"""Image readers, one small class per format (in the style of MONAI's ``image_reader``).

* :class:`DicomReader` (pydicom): rescale slope/intercept (to Hounsfield units for CT),
  windowing presets (``lung``, ``mediastinum``, ``bone``, ``brain``), the file's own window
  (``"file"``) or a custom ``(center, width)``, MONOCHROME1 inversion, multi-frame files.
* :class:`PILReader` (Pillow): PNG, JPEG, BMP, TIFF — 8- and 16-bit grey, colour → grey.
* :class:`NumpyReader`: ``.npy`` / ``.npz`` arrays (never with pickle).

Every reader returns an :class:`ImageData`: a float32 array ``[C, H, W]`` (C = frames of a
multi-frame DICOM, else 1: colour is converted to grey) and the nominal value range used to
scale it to [0, 1] (0–255 for 8-bit files, the window for windowed DICOM, the data range
otherwise). Anything unreadable — a truncated DICOM, a text file named ``.png``, pixel data
that no installed decoder handles — raises :class:`~ehrtext.errors.InputError` naming the
file; :func:`read_image` picks the reader from the suffix, or sniffs the first bytes.

Window arithmetic (documented so tests can be exact): with centre ``c`` and width ``w``,
``y = clip((x - (c - w/2)) / w, 0, 1)``; MONOCHROME1 images are then inverted as ``1 - y``
(without a window: ``lo + hi - x`` over the value range), so bright always means dense.

Example:
    >>> img = read_image("tests/imaging/data/CT_small.dcm", window="lung")  # doctest: +SKIP
    >>> img.array.shape, img.value_range                                      # doctest: +SKIP
    ((1, 128, 128), (0.0, 1.0))
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ehrtext.errors import InputError

__all__ = [
    "WINDOW_PRESETS",
    "ImageData",
    "ImageReader",
    "DicomReader",
    "PILReader",
    "NumpyReader",
    "read_image",
    "apply_window",
    "reader_for",
]

#: Window presets as (centre, width) in Hounsfield units.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}

Window = str | tuple[float, float] | None
PathLike = str | os.PathLike[str]


@dataclass
class ImageData:
    """A decoded image: ``array`` float32 ``[C, H, W]``, its nominal ``value_range`` (what
    maps to 0 and 1), and ``meta`` (format, photometric interpretation, frames, window …).

    Example:
        >>> d = ImageData(np.zeros((1, 2, 3), np.float32), (0.0, 255.0), {"format": "png"})
        >>> d.shape
        (1, 2, 3)
    """

    array: np.ndarray
    value_range: tuple[float, float]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of :attr:`array` (``[C, H, W]``)."""
        return tuple(self.array.shape)

    def scaled(self) -> np.ndarray:
        """The array mapped to [0, 1] through :attr:`value_range` (clipped).

        Example:
            >>> ImageData(np.array([[[0, 51, 255]]], np.float32), (0.0, 255.0)).scaled()
            array([[[0. , 0.2, 1. ]]], dtype=float32)
        """
        lo, hi = self.value_range
        span = hi - lo if hi > lo else 1.0
        return np.clip((self.array - lo) / span, 0.0, 1.0).astype(np.float32)


def apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """``clip((x - (center - width/2)) / width, 0, 1)`` as float32.

    Example:
        >>> apply_window(np.array([-1350.0, -600.0, 150.0, 500.0]), -600, 1500)
        array([0. , 0.5, 1. , 1. ], dtype=float32)
    """
    if not width > 0:
        raise InputError(f"window width must be positive, got {width}")
    low = center - width / 2.0
    return np.clip((np.asarray(values, dtype=np.float64) - low) / width, 0.0, 1.0).astype(
        np.float32
    )


def _to_grey(rgb: np.ndarray) -> np.ndarray:
    """``[..., 3|4]`` → ``[...]`` luma (ITU-R BT.601)."""
    rgb = rgb[..., :3].astype(np.float64)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _range_of(array: np.ndarray) -> tuple[float, float]:
    if array.size == 0:
        return (0.0, 1.0)
    return (float(np.min(array)), float(np.max(array)))


class ImageReader(ABC):
    """One image format: ``suffixes`` it claims, ``sniff`` on the first bytes, ``read``.

    Example:
        >>> PILReader().verify_suffix("xray.PNG")
        True
    """

    suffixes: tuple[str, ...] = ()

    def verify_suffix(self, path: PathLike) -> bool:
        """Whether this reader claims the file by its name."""
        name = str(path).lower()
        return any(name.endswith(s) for s in self.suffixes)

    def sniff(self, head: bytes) -> bool:
        """Whether the file's first 132 bytes look like this format."""
        return False

    @abstractmethod
    def read(self, path: PathLike) -> ImageData:
        """Decode ``path``; raise :class:`InputError` naming it when it cannot."""


class DicomReader(ImageReader):
    """DICOM via pydicom: rescale, window, MONOCHROME1 inversion, all frames.

    ``window``: a preset name (:data:`WINDOW_PRESETS`), ``"file"`` (the file's first
    WindowCenter/WindowWidth; no window when it has none), ``(center, width)``, or ``None``
    (no windowing: the rescaled values, scaled later over their range). ``rescale=False`` keeps
    stored values. ``frame`` picks one frame of a multi-frame file (default: all, as channels).

    Example:
        >>> reader = DicomReader(window=(40, 400))
        >>> reader.read("tests/imaging/data/CT_small.dcm").meta["window"]   # doctest: +SKIP
        (40.0, 400.0)
    """

    suffixes = (".dcm", ".dicom", ".dic")

    def __init__(
        self,
        window: Window = None,
        *,
        rescale: bool = True,
        invert_monochrome1: bool = True,
        frame: int | None = None,
    ) -> None:
        if isinstance(window, str) and window not in WINDOW_PRESETS and window != "file":
            raise InputError(
                f"unknown window {window!r}; use one of {', '.join(WINDOW_PRESETS)}, "
                "'file', or (center, width)"
            )
        if isinstance(window, (tuple, list)):
            if len(window) != 2 or not float(window[1]) > 0:
                raise InputError(f"a custom window is (center, width>0), got {window!r}")
            window = (float(window[0]), float(window[1]))
        self.window = window
        self.rescale = rescale
        self.invert_monochrome1 = invert_monochrome1
        self.frame = frame

    def sniff(self, head: bytes) -> bool:
        return len(head) >= 132 and head[128:132] == b"DICM"

    @staticmethod
    def _rescale_params(ds: Any, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Slope and intercept per frame (top level, shared or per-frame functional groups)."""

        def from_item(item: Any) -> tuple[float, float] | None:
            if item is None:
                return None
            if "RescaleSlope" in item or "RescaleIntercept" in item:
                return float(item.get("RescaleSlope", 1) or 1), float(
                    item.get("RescaleIntercept", 0) or 0
                )
            seq = item.get("PixelValueTransformationSequence")
            if seq:
                return from_item(seq[0])
            return None

        top = from_item(ds)
        if top is None:
            shared = ds.get("SharedFunctionalGroupsSequence")
            top = from_item(shared[0]) if shared else None
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        slopes = np.ones(n_frames)
        intercepts = np.zeros(n_frames)
        for i in range(n_frames):
            params = from_item(per_frame[i]) if per_frame and i < len(per_frame) else None
            params = params or top or (1.0, 0.0)
            slopes[i], intercepts[i] = params
        return slopes, intercepts

    def read(self, path: PathLike) -> ImageData:
        try:
            import pydicom
            from pydicom.errors import InvalidDicomError
        except ImportError as exc:  # pragma: no cover - the image extra is missing
            raise InputError("reading DICOM needs pydicom: pip install 'ehrtext[image]'") from exc
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a readable DICOM file ({type(exc).__name__})") from None
        except Exception as exc:  # pydicom raises many kinds on corrupt headers
            raise InputError(f"{path}: not a readable DICOM file ({type(exc).__name__})") from None
        if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise InputError(f"{path}: DICOM file without pixel data (not an image)")
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        try:
            pixels = np.asarray(ds.pixel_array)
        except Exception as exc:  # truncated data, no decoder for the transfer syntax, ...
            name = getattr(syntax, "name", str(syntax)) if syntax is not None else "unknown"
            raise InputError(
                f"{path}: cannot decode the DICOM pixel data (transfer syntax {name}; "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
            ) from None
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        if samples > 1:  # pydicom returns RGB for colour data (YBR converted): luma
            pixels = _to_grey(pixels)
        if n_frames == 1 or pixels.ndim == 2:
            pixels = pixels.reshape(1, *pixels.shape[-2:])
        values = pixels.astype(np.float64)
        meta: dict[str, Any] = {
            "format": "dicom",
            "path": str(path),
            "photometric": photometric,
            "frames": int(values.shape[0]),
            "modality": str(ds.get("Modality", "")),
            "transfer_syntax": getattr(syntax, "name", None),
        }
        if self.rescale and samples == 1:
            slopes, intercepts = self._rescale_params(ds, values.shape[0])
            values = values * slopes[:, None, None] + intercepts[:, None, None]
            meta["rescale"] = (
                (float(slopes[0]), float(intercepts[0]))
                if np.all(slopes == slopes[0]) and np.all(intercepts == intercepts[0])
                else "per-frame"
            )
        if self.frame is not None:
            if not -values.shape[0] <= self.frame < values.shape[0]:
                raise InputError(f"{path}: frame {self.frame} of a {values.shape[0]}-frame file")
            values = (
                values[self.frame : self.frame + 1] if self.frame >= 0 else values[[self.frame]]
            )
        window = self._window_for(ds)
        monochrome1 = photometric == "MONOCHROME1" and self.invert_monochrome1
        if window is not None:
            out = apply_window(values, *window)
            if monochrome1:
                out = (1.0 - out).astype(np.float32)
            meta["window"] = window
            value_range = (0.0, 1.0)
        else:
            value_range = _range_of(values)
            bits = int(ds.get("BitsStored", 0) or 0)
            if bits and bits <= 8 and not int(ds.get("PixelRepresentation", 0) or 0):
                slope, intercept = meta.get("rescale", (1.0, 0.0))
                if isinstance(slope, float) and slope > 0:  # 8-bit data: its nominal range
                    value_range = (intercept, 255.0 * slope + intercept)
            if monochrome1:
                values = value_range[0] + value_range[1] - values
            out = values.astype(np.float32)
        meta["inverted"] = monochrome1
        return ImageData(out, value_range, meta)

    def _window_for(self, ds: Any) -> tuple[float, float] | None:
        if self.window is None:
            return None
        if isinstance(self.window, tuple):
            return self.window
        if self.window == "file":
            center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
            if center is None or width is None:
                return None

            def first(v: Any) -> float:
                try:
                    return float(v[0])
                except TypeError:
                    return float(v)

            return (first(center), first(width)) if first(width) > 0 else None
        return WINDOW_PRESETS[self.window]


_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")
_EIGHT_BIT_MODES = ("1", "L", "P", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV")


class PILReader(ImageReader):
    """PNG / JPEG / BMP / TIFF via Pillow, as grey ``[1, H, W]``; 16-bit grey is kept.

    Value range: 0–255 for 8-bit modes, 0–65535 for 16-bit, the data range for 32-bit and
    float modes.

    Example:
        >>> PILReader().sniff(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(124))
        True
    """

    suffixes = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

    def sniff(self, head: bytes) -> bool:
        return head.startswith(_IMAGE_MAGIC)

    def read(self, path: PathLike) -> ImageData:
        try:
            from PIL import Image, UnidentifiedImageError
        except ImportError as exc:  # pragma: no cover
            raise InputError("reading PNG/JPEG needs Pillow: pip install 'ehrtext[image]'") from exc
        try:
            with Image.open(path) as img:
                img.load()
                mode = img.mode
                if mode in _EIGHT_BIT_MODES:
                    arr = np.asarray(img.convert("L"), dtype=np.float32)
                    value_range = (0.0, 255.0)
                elif mode.startswith("I;16"):
                    arr = np.asarray(img, dtype=np.float32)
                    value_range = (0.0, 65535.0)
                else:  # "I", "F"
                    arr = np.asarray(img, dtype=np.float32)
                    value_range = _range_of(arr)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"{path}: not a readable image file ({type(exc).__name__})") from None
        except Exception as exc:  # Pillow plugins raise assorted errors on corrupt data
            raise InputError(f"{path}: not a readable image file ({type(exc).__name__})") from None
        if arr.ndim != 2:
            raise InputError(f"{path}: unexpected image shape {arr.shape}")
        return ImageData(arr[None], value_range, {"format": "pil", "mode": mode, "path": str(path)})


class NumpyReader(ImageReader):
    """``.npy`` / ``.npz`` arrays, loaded without pickle. ``[H, W]``, ``[C, H, W]`` or
    ``[H, W, 3|4]`` (colour → grey). An ``.npz`` is read at ``key`` (default: its only
    array, or ``"image"``). Value range: 0–255 for uint8, 0–65535 for uint16, else the data.

    Example:
        >>> NumpyReader().verify_suffix("scan.npz")
        True
    """

    suffixes = (".npy", ".npz")

    def __init__(self, key: str | None = None) -> None:
        self.key = key

    def sniff(self, head: bytes) -> bool:
        return head.startswith(b"\x93NUMPY")

    def read(self, path: PathLike) -> ImageData:
        try:
            loaded = np.load(path, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    names = list(loaded.files)
                    key = self.key or (names[0] if len(names) == 1 else "image")
                    if key not in names:
                        raise InputError(
                            f"{path}: no array {key!r} in the .npz (has {', '.join(names)})"
                        )
                    arr = np.asarray(loaded[key])
            else:
                arr = np.asarray(loaded)
        except InputError:
            raise
        except Exception as exc:  # ValueError (pickled object arrays), OSError, EOFError, ...
            raise InputError(f"{path}: not a readable NumPy array ({type(exc).__name__})") from None
        return array_to_image(arr, source=str(path))


def array_to_image(arr: np.ndarray, source: str = "<array>") -> ImageData:
    """An in-memory array (``[H, W]``, ``[C, H, W]`` or ``[H, W, 3|4]``) as :class:`ImageData`.

    Example:
        >>> array_to_image(np.zeros((4, 5), np.uint8)).value_range
        (0.0, 255.0)
    """
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{source}: array of dtype {arr.dtype} is not an image")
    kind = arr.dtype
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
        arr = _to_grey(arr)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape[-2:]) < 1:
        raise InputError(f"{source}: array of shape {arr.shape} is not a 2-D image")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{source}: the array holds NaN or infinite values")
    if kind == np.uint8:
        value_range = (0.0, 255.0)
    elif kind == np.uint16:
        value_range = (0.0, 65535.0)
    elif kind == np.bool_:
        value_range = (0.0, 1.0)
    else:
        value_range = _range_of(arr)
    return ImageData(arr.astype(np.float32), value_range, {"format": "numpy", "path": source})


_READERS: tuple[type[ImageReader], ...] = (DicomReader, PILReader, NumpyReader)


def reader_for(path: PathLike, *, window: Window = None, **dicom_options: Any) -> ImageReader:
    """The reader for ``path``: by suffix, else by the first bytes (DICOM files often have no
    suffix). Raises :class:`InputError` naming the file when neither decides.

    Example:
        >>> type(reader_for("a/b.jpeg")).__name__
        'PILReader'
    """
    for cls in _READERS:
        reader = DicomReader(window, **dicom_options) if cls is DicomReader else cls()
        if reader.verify_suffix(path):
            return reader
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise InputError(f"{path}: cannot open the image ({type(exc).__name__})") from None
    for cls in _READERS:
        reader = DicomReader(window, **dicom_options) if cls is DicomReader else cls()
        if reader.sniff(head):
            return reader
    raise InputError(f"{path}: unknown image format (not DICOM, PNG/JPEG/BMP/TIFF or NumPy)")


def read_image(path: PathLike, *, window: Window = None, **dicom_options: Any) -> ImageData:
    """Read one image file of any supported format (see :func:`reader_for`).

    ``window`` and ``dicom_options`` (``rescale``, ``invert_monochrome1``, ``frame``) apply
    to DICOM files only. A missing or unreadable file raises :class:`InputError` naming it.

    Example:
        >>> read_image("tests/imaging/data/MR_small.dcm").shape        # doctest: +SKIP
        (1, 64, 64)
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such image file")
    return reader_for(p, window=window, **dicom_options).read(p)
