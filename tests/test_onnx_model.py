"""OnnxModelExtractor: reading the graph, guessing preprocessing, overrides, inference, errors.

Every model here is built in the test with ``onnx.helper`` (see ``onnx_factories``), so the
expected embeddings have an exact numpy reference.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fvr_audit.errors import ExitCode, InputError
from fvr_audit.extractors.base import (
    AlignmentTemplate,
    ChannelOrder,
    FaceGeometry,
    Layout,
    Preprocessing,
    l2_normalize,
)
from fvr_audit.extractors.onnx_model import THREADS_ENV, OnnxModelExtractor, PreprocessingGuess
from fvr_audit.extractors.registry import ExtractorOptions, get_extractor

# The factories live next to this file; pytest's importlib mode does not put tests/ on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_factories import (
    build_embedding_model,
    build_rank3_model,
    build_rank3_output_model,
    projection_weights,
    reference_embedding,
)

ARCFACE_PIXELS = (
    "guessed: (x-127.5)/127.5 RGB (ArcFace convention for 112x112 inputs; RGB as insightface feeds its "
    "ONNX files; try --channel-order BGR if matches look poor; override with --mean/--std/--channel-order)"
)
ARCFACE_CROP = (
    "guessed: crop 112x112 arcface-5pt (ArcFace convention for 112x112 inputs; override with --crop)"
)


def random_crops(count: int, size: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def expected_vectors(extractor: OnnxModelExtractor, crops: np.ndarray, dim: int = 16) -> np.ndarray:
    """The standard test model's output when fed with the extractor's own preprocessing."""
    pre = extractor.guess.preprocessing
    return reference_embedding(pre.apply(crops), pre.layout.value, projection_weights(dim))


@pytest.fixture(autouse=True)
def _default_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)


# --------------------------------------------------------------------------------------------
# Guesses from the graph
# --------------------------------------------------------------------------------------------


def test_arcface_sized_nchw_model_gets_arcface_guess_and_reasons(tmp_path: Path) -> None:
    extractor = OnnxModelExtractor(build_embedding_model(tmp_path / "arc.onnx"), ExtractorOptions())
    guess = extractor.guess

    assert isinstance(guess, PreprocessingGuess)
    assert guess.preprocessing == Preprocessing(ChannelOrder.RGB, Layout.NCHW, (127.5,) * 3, (127.5,) * 3)
    assert guess.geometry == FaceGeometry(112, AlignmentTemplate.ARCFACE_5PT)
    assert guess.low_confidence is False
    assert guess.describe_lines() == [
        "guessed: input 112x112 NCHW (from the graph)",
        ARCFACE_PIXELS,
        ARCFACE_CROP,
    ]


def test_embeddings_match_numpy_reference(tmp_path: Path) -> None:
    extractor = OnnxModelExtractor(build_embedding_model(tmp_path / "arc.onnx"))
    crops = random_crops(5, 112)
    expected = expected_vectors(extractor, crops)

    np.testing.assert_allclose(extractor.embed(crops, normalize=False), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(extractor.embed(crops), l2_normalize(expected), rtol=1e-4, atol=1e-5)
    assert extractor.embed(crops[:0]).shape == (0, 16)


def test_nhwc_layout_is_read_from_the_last_axis(tmp_path: Path) -> None:
    path = build_embedding_model(tmp_path / "nhwc.onnx", input_shape=["N", 112, 112, 3], layout="NHWC")
    extractor = OnnxModelExtractor(path)
    crops = random_crops(3, 112)

    assert extractor.guess.preprocessing.layout is Layout.NHWC
    assert extractor.guess.describe_lines()[0] == "guessed: input 112x112 NHWC (from the graph)"
    np.testing.assert_allclose(
        extractor.embed(crops, normalize=False), expected_vectors(extractor, crops), rtol=1e-4, atol=1e-5
    )


def test_internal_sub_mul_normalisation_is_detected(tmp_path: Path) -> None:
    path = build_embedding_model(tmp_path / "mx.onnx", prologue=[("Sub", 127.5), ("Mul", 1 / 128)])
    extractor = OnnxModelExtractor(path)
    guess = extractor.guess
    crops = random_crops(4, 112)

    assert guess.preprocessing.mean == (0.0, 0.0, 0.0)
    assert guess.preprocessing.std == (1.0, 1.0, 1.0)
    assert guess.describe_lines()[1] == (
        "guessed: (x-0)/1 RGB (mean, std: the graph starts with Sub, Mul by constants on its input, so the "
        "model normalises internally; channel order: ArcFace convention for 112x112 inputs; RGB as "
        "insightface feeds its ONNX files; try --channel-order BGR if matches look poor; "
        "override with --mean/--std/--channel-order)"
    )
    # The model applies (x-127.5)/128 itself, so feeding raw pixels must reproduce that.
    internal = (crops.astype(np.float32) - 127.5) / 128
    expected = reference_embedding(internal.transpose(0, 3, 1, 2), "NCHW", projection_weights(16))
    np.testing.assert_allclose(extractor.embed(crops, normalize=False), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("size", "mean", "std", "geometry", "low_confidence", "pixel_source"),
    [
        (
            160,
            (127.5,) * 3,
            (128.0,) * 3,
            FaceGeometry(160, AlignmentTemplate.DLIB_5PT, 0.2),
            False,
            "FaceNet convention for 160x160 inputs",
        ),
        (
            150,
            (122.782, 117.001, 104.298),
            (256.0,) * 3,
            FaceGeometry(150, AlignmentTemplate.DLIB_5PT, 0.25),
            False,
            "dlib ResNet convention for 150x150 inputs",
        ),
        (
            128,
            (127.5,) * 3,
            (127.5,) * 3,
            FaceGeometry(128, AlignmentTemplate.DLIB_5PT, 0.25),
            True,
            "no known convention for 128x128 inputs, low-confidence guess",
        ),
    ],
)
def test_size_conventions(
    tmp_path: Path,
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    geometry: FaceGeometry,
    low_confidence: bool,
    pixel_source: str,
) -> None:
    path = build_embedding_model(tmp_path / f"m{size}.onnx", input_shape=["N", 3, size, size])
    guess = OnnxModelExtractor(path).guess

    assert guess.preprocessing == Preprocessing(ChannelOrder.RGB, Layout.NCHW, mean, std)
    assert guess.geometry == geometry
    assert guess.low_confidence is low_confidence
    lines = guess.describe_lines()
    assert lines[1].endswith(f"({pixel_source}; override with --mean/--std/--channel-order)")
    assert (
        lines[2]
        == f"guessed: crop {geometry.describe()} ({pixel_source}; "
        + (
            "FaceNet crops are MTCNN boxes with a small margin; a dlib chip with padding 0.2 is close; "
            if size == 160
            else ""
        )
        + "override with --crop/--padding)"
    )
    if low_confidence:
        assert lines[-1] == (
            "warning: no known convention for 128x128 inputs; the guesses above are low-confidence, "
            "check them or set --mean/--std/--channel-order/--crop"
        )
    else:
        assert len(lines) == 3


def test_metadata_mean_std_on_unit_scale_are_scaled_to_pixels(tmp_path: Path) -> None:
    metadata = {"mean": "[0.5, 0.5, 0.5]", "std": "0.5", "channel_order": "BGR"}
    extractor = OnnxModelExtractor(build_embedding_model(tmp_path / "meta.onnx", metadata=metadata))
    guess = extractor.guess
    crops = random_crops(3, 112)

    assert guess.preprocessing == Preprocessing(ChannelOrder.BGR, Layout.NCHW, (127.5,) * 3, (127.5,) * 3)
    assert guess.describe_lines()[1] == (
        "guessed: (x-127.5)/127.5 BGR (mean, std: from model metadata mean='[0.5, 0.5, 0.5]' std='0.5' "
        "(0..1 scale, x255); channel order: from model metadata channel_order='BGR'; "
        "override with --mean/--std/--channel-order)"
    )
    np.testing.assert_allclose(
        extractor.embed(crops, normalize=False), expected_vectors(extractor, crops), rtol=1e-4, atol=1e-5
    )


def test_metadata_on_pixel_scale_is_used_as_is_and_bad_entries_are_noted(tmp_path: Path) -> None:
    metadata = {"input_mean": "127.5", "input_std": "128", "color_order": "YUV"}
    guess = OnnxModelExtractor(build_embedding_model(tmp_path / "meta.onnx", metadata=metadata)).guess

    assert guess.preprocessing.mean == (127.5,) * 3
    assert guess.preprocessing.std == (128.0,) * 3
    assert guess.preprocessing.channel_order is ChannelOrder.RGB
    assert (
        guess.describe_lines()[-1] == "note: ignored model metadata color_order='YUV' (neither RGB nor BGR)"
    )


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------


def test_overrides_win_and_are_recorded(tmp_path: Path) -> None:
    options = ExtractorOptions(
        mean=(10.0, 20.0, 30.0),
        std=(50.0, 60.0, 70.0),
        channel_order=ChannelOrder.BGR,
        crop=AlignmentTemplate.DLIB_5PT,
        padding=0.4,
    )
    extractor = OnnxModelExtractor(build_embedding_model(tmp_path / "arc.onnx"), options)
    guess = extractor.guess
    crops = random_crops(3, 112)

    assert guess.preprocessing == Preprocessing(
        ChannelOrder.BGR, Layout.NCHW, (10.0, 20.0, 30.0), (50.0, 60.0, 70.0)
    )
    assert guess.geometry == FaceGeometry(112, AlignmentTemplate.DLIB_5PT, 0.4)
    assert guess.describe_lines() == [
        "guessed: input 112x112 NCHW (from the graph)",
        (
            "set: (x-[10,20,30])/[50,60,70] BGR (mean: set by --mean; std: set by --std; "
            "channel order: set by --channel-order)"
        ),
        "set: crop 112x112 dlib-5pt padding 0.4 (crop: set by --crop; padding: set by --padding)",
    ]
    np.testing.assert_allclose(
        extractor.embed(crops, normalize=False), expected_vectors(extractor, crops), rtol=1e-4, atol=1e-5
    )


def test_partial_override_keeps_the_rest_of_the_guess(tmp_path: Path) -> None:
    options = ExtractorOptions(channel_order=ChannelOrder.BGR, padding=0.3)
    guess = OnnxModelExtractor(build_embedding_model(tmp_path / "arc.onnx"), options).guess

    assert guess.describe_lines()[1:] == [
        (
            "guessed: (x-127.5)/127.5 BGR (mean, std: ArcFace convention for 112x112 inputs; channel order: "
            "set by --channel-order; override with --mean/--std)"
        ),
        (
            "guessed: crop 112x112 arcface-5pt (ArcFace convention for 112x112 inputs; --padding has no "
            "effect on arcface-5pt crops; override with --crop)"
        ),
    ]


def test_dynamic_spatial_axes_need_input_size(tmp_path: Path) -> None:
    path = build_embedding_model(tmp_path / "dyn.onnx", input_shape=["N", 3, "H", "W"])
    with pytest.raises(InputError) as excinfo:
        OnnxModelExtractor(path)
    assert str(excinfo.value) == f"{path}: input [N, 3, H, W] has dynamic spatial axes; give --input-size"

    extractor = OnnxModelExtractor(path, ExtractorOptions(input_size=96))
    crops = random_crops(2, 96)
    assert extractor.geometry == FaceGeometry(96, AlignmentTemplate.DLIB_5PT, 0.25)
    assert extractor.guess.describe_lines()[0] == (
        "set: input 96x96 NCHW (size: set by --input-size; layout: from the graph)"
    )
    assert extractor.guess.low_confidence is True
    np.testing.assert_allclose(
        extractor.embed(crops, normalize=False), expected_vectors(extractor, crops), rtol=1e-4, atol=1e-5
    )


def test_layout_override_resolves_an_ambiguous_input(tmp_path: Path) -> None:
    path = build_embedding_model(tmp_path / "amb.onnx", input_shape=["N", 3, "H", 3])
    with pytest.raises(InputError) as excinfo:
        OnnxModelExtractor(path, ExtractorOptions(input_size=3))
    assert str(excinfo.value) == (
        f"{path}: input [N, 3, H, 3] has 3 on both axis 1 and axis 3; "
        "say which is the channel axis with --layout NCHW or --layout NHWC"
    )
    extractor = OnnxModelExtractor(path, ExtractorOptions(input_size=3, layout=Layout.NCHW))
    assert (
        extractor.guess.describe_lines()[0]
        == "set: input 3x3 NCHW (size: set by --input-size; layout: set by --layout)"
    )


# --------------------------------------------------------------------------------------------
# Outputs, batches, info
# --------------------------------------------------------------------------------------------


def test_symbolic_output_dim_is_found_by_a_test_inference(tmp_path: Path) -> None:
    path = build_embedding_model(tmp_path / "dynout.onnx", dim=24, output_shape=["N", "D"])
    extractor = OnnxModelExtractor(path)
    crops = random_crops(2, 112)

    assert extractor.dim == 24
    np.testing.assert_allclose(
        extractor.embed(crops, normalize=False),
        expected_vectors(extractor, crops, dim=24),
        rtol=1e-4,
        atol=1e-5,
    )


def test_output_with_trailing_unit_axes_is_flattened(tmp_path: Path) -> None:
    extractor = OnnxModelExtractor(build_embedding_model(tmp_path / "out4d.onnx", output_4d=True))
    crops = random_crops(3, 112)

    assert extractor.dim == 16
    vectors = extractor.embed(crops, normalize=False)
    assert vectors.shape == (3, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected_vectors(extractor, crops), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fixed_batch", [1, 4])
def test_fixed_batch_axis_is_respected(tmp_path: Path, fixed_batch: int) -> None:
    path = build_embedding_model(
        tmp_path / "b.onnx", input_shape=[fixed_batch, 3, 112, 112], output_shape=[fixed_batch, 16]
    )
    extractor = OnnxModelExtractor(path)
    crops = random_crops(7, 112)

    assert extractor.batch_size == fixed_batch
    np.testing.assert_allclose(
        extractor.embed(crops, normalize=False), expected_vectors(extractor, crops), rtol=1e-4, atol=1e-5
    )


def test_info_describes_the_file(tmp_path: Path) -> None:
    path = build_embedding_model(tmp_path / "arc.onnx")
    extractor = OnnxModelExtractor(path)
    info = extractor.info

    assert info.name == "arc.onnx"
    assert info.dim == 16
    assert info.geometry == extractor.guess.geometry
    assert info.preprocessing == extractor.guess.preprocessing
    assert info.source == f"user ONNX file {path}"
    assert info.license == "unknown (user-supplied)"
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.differentiable is True  # white-box through the torch interpreter of its graph
    assert info.notes.splitlines() == extractor.guess.describe_lines()
    assert extractor.queries_used == 0


def test_registry_routes_onnx_paths_here(tmp_path: Path) -> None:
    path = build_embedding_model(tmp_path / "arc.onnx")
    extractor = get_extractor(str(path), ExtractorOptions(std=(128.0,) * 3))
    assert isinstance(extractor, OnnxModelExtractor)
    assert extractor.guess.preprocessing.std == (128.0,) * 3


def test_threads_default_to_two_and_follow_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = build_embedding_model(tmp_path / "arc.onnx")
    assert OnnxModelExtractor(path)._session.get_session_options().intra_op_num_threads == 2
    monkeypatch.setenv(THREADS_ENV, "1")
    assert OnnxModelExtractor(path)._session.get_session_options().intra_op_num_threads == 1
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(InputError) as excinfo:
        OnnxModelExtractor(path)
    assert str(excinfo.value) == "FVR_AUDIT_THREADS must be a positive whole number of threads, got 'many'"


def test_loading_a_model_does_not_import_torch(tmp_path: Path) -> None:
    path = build_embedding_model(tmp_path / "arc.onnx")
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from fvr_audit.extractors.onnx_model import OnnxModelExtractor
        extractor = OnnxModelExtractor({str(path)!r})
        extractor.embed(np.zeros((1, 112, 112, 3), np.uint8))
        print(extractor.info.dim)
        assert "torch" not in sys.modules, "torch was imported"
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "16"


# --------------------------------------------------------------------------------------------
# Errors: one line, naming the file, InputError (exit code 2)
# --------------------------------------------------------------------------------------------


def _missing(tmp_path: Path) -> tuple[Path, ExtractorOptions]:
    return tmp_path / "nope.onnx", ExtractorOptions()


def _broken(tmp_path: Path) -> tuple[Path, ExtractorOptions]:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"this is not a protobuf \xff\xfe\x00 at all")
    return path, ExtractorOptions()


def _empty(tmp_path: Path) -> tuple[Path, ExtractorOptions]:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    return path, ExtractorOptions()


def _truncated(tmp_path: Path) -> tuple[Path, ExtractorOptions]:
    good = build_embedding_model(tmp_path / "good.onnx").read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(good[: len(good) // 2])
    return path, ExtractorOptions()


def _two_inputs(tmp_path: Path) -> tuple[Path, ExtractorOptions]:
    return build_embedding_model(tmp_path / "two.onnx", extra_inputs=["scale"]), ExtractorOptions()


def _rank3(tmp_path: Path) -> tuple[Path, ExtractorOptions]:
    return build_rank3_model(tmp_path / "rank3.onnx"), ExtractorOptions()


def _grey(tmp_path: Path) -> tuple[Path, ExtractorOptions]:
    path = build_embedding_model(tmp_path / "grey.onnx", input_shape=["N", 1, 112, 112], channels=1)
    return path, ExtractorOptions()


def _not_square(tmp_path: Path) -> tuple[Path, ExtractorOptions]:
    return build_embedding_model(tmp_path / "rect.onnx", input_shape=["N", 3, 112, 96]), ExtractorOptions()


def _size_mismatch(tmp_path: Path) -> tuple[Path, ExtractorOptions]:
    return build_embedding_model(tmp_path / "arc.onnx"), ExtractorOptions(input_size=160)


def _zero_std(tmp_path: Path) -> tuple[Path, ExtractorOptions]:
    return build_embedding_model(tmp_path / "arc.onnx"), ExtractorOptions(std=(127.5, 0.0, 127.5))


def _negative_size(tmp_path: Path) -> tuple[Path, ExtractorOptions]:
    return build_embedding_model(tmp_path / "arc.onnx"), ExtractorOptions(input_size=-1)


def _wrong_layout(tmp_path: Path) -> tuple[Path, ExtractorOptions]:
    return build_embedding_model(tmp_path / "arc.onnx"), ExtractorOptions(layout=Layout.NHWC)


def _bad_output(tmp_path: Path) -> tuple[Path, ExtractorOptions]:
    return build_rank3_output_model(tmp_path / "badout.onnx"), ExtractorOptions()


#: (builder of the bad input, expected message with {path}).
ERROR_CASES = [
    (_missing, "{path}: ONNX file not found"),
    (_broken, "{path}: not an ONNX model, or the file is corrupt"),
    (_empty, "{path}: not an ONNX model, or the file is corrupt"),
    (_truncated, "{path}: not an ONNX model, or the file is corrupt"),
    (
        _two_inputs,
        "{path}: the model has 2 inputs ('image', 'scale'); fvr-audit needs exactly one image input",
    ),
    (_rank3, "{path}: input has rank 3 [3, 112, 112]; expected a rank-4 image batch"),
    (
        _grey,
        (
            "{path}: input [N, 1, 112, 112] has no 3-channel axis; give --layout NCHW or --layout NHWC "
            "if it takes RGB images"
        ),
    ),
    (_not_square, "{path}: input [N, 3, 112, 96] is not square; only square face crops are supported"),
    (
        _size_mismatch,
        "{path}: --input-size 160 does not match the graph's fixed input [N, 3, 112, 112] (112x112)",
    ),
    (_zero_std, "{path}: --std values must be non-zero finite numbers, got [127.5,0,127.5]"),
    (_negative_size, "{path}: --input-size must be a positive number of pixels, got -1"),
    (_wrong_layout, "{path}: with layout NHWC the channel axis of input [N, 3, 112, 112] is 112, not 3"),
    (_bad_output, "{path}: output 'embedding' has shape [N, 3, 112]; expected [N, D] (or [N, D, 1, 1])"),
]


@pytest.mark.parametrize(
    ("make", "message"), ERROR_CASES, ids=[make.__name__.strip("_") for make, _ in ERROR_CASES]
)
def test_errors_are_one_line_input_errors_naming_the_file(tmp_path: Path, make, message: str) -> None:
    path, options = make(tmp_path)
    with pytest.raises(InputError) as excinfo:
        OnnxModelExtractor(path, options)
    assert str(excinfo.value) == message.format(path=path)
    assert excinfo.value.exit_code is ExitCode.BAD_INPUT
    assert "\n" not in str(excinfo.value)
