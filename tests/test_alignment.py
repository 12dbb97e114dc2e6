"""Image reading and face alignment: every odd input is handled and counted, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fvr_audit.alignment import FaceAligner, FaceStatus, NoFacePolicy, load_image_rgb
from fvr_audit.alignment.aligner import ARCFACE_TEMPLATE_112, resize_square, warp_to_template
from fvr_audit.errors import InputError
from fvr_audit.extractors.base import AlignmentTemplate, FaceGeometry

DLIB_150 = FaceGeometry(150, AlignmentTemplate.DLIB_5PT, 0.25)
FACERES_224 = FaceGeometry(224, AlignmentTemplate.DLIB_5PT, 0.5)
ARCFACE_112 = FaceGeometry(112, AlignmentTemplate.ARCFACE_5PT)


@pytest.mark.parametrize(
    "mode, value",
    [("L", 128), ("RGBA", (10, 20, 30, 255)), ("P", 3), ("1", 1), ("CMYK", (0, 0, 0, 0)), ("I;16", 30000)],
)
def test_every_image_mode_reads_as_rgb_uint8(tmp_path, mode, value):
    path = tmp_path / "x.png" if mode != "CMYK" else tmp_path / "x.jpg"
    Image.new(mode, (33, 17), value).save(path)
    image = load_image_rgb(path)
    assert image.dtype == np.uint8 and image.shape == (17, 33, 3)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    image.save(tmp_path / "r.jpg", exif=exif)
    assert load_image_rgb(tmp_path / "r.jpg").shape == (40, 20, 3)


def test_unreadable_files_get_one_line_errors(tmp_path):
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(InputError) as error:
        load_image_rgb(tmp_path / "text.jpg")
    assert str(error.value) == f"{tmp_path / 'text.jpg'}: not a readable image (unknown or corrupt format)"
    with pytest.raises(InputError) as error:
        load_image_rgb(tmp_path / "missing.png")
    assert str(error.value) == f"{tmp_path / 'missing.png'}: no such image file"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "full.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:200])
    with pytest.raises(InputError) as error:
        load_image_rgb(tmp_path / "cut.jpg")
    assert str(error.value).startswith(f"{tmp_path / 'cut.jpg'}: image could not be decoded (")


def test_no_face_in_noise_is_counted_not_raised():
    noise = np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    result = FaceAligner([DLIB_150]).align(noise)
    assert result.status is FaceStatus.NO_FACE and result.crops == () and not result.status.usable


def test_tiny_image_is_too_small():
    result = FaceAligner([DLIB_150]).align(np.zeros((10, 300, 3), np.uint8))
    assert result.status is FaceStatus.TOO_SMALL
    assert result.reason == "300x10 is below 20 px"


def test_center_fallback_gives_crops_of_every_geometry():
    noise = np.random.default_rng(1).integers(0, 256, (250, 250, 3), dtype=np.uint8)
    result = FaceAligner([DLIB_150, FACERES_224, ARCFACE_112], no_face=NoFacePolicy.CENTER).align(noise)
    assert result.status is FaceStatus.CENTER_FALLBACK
    assert [c.shape for c in result.crops] == [(150, 150, 3), (224, 224, 3), (112, 112, 3)]


def test_pre_aligned_inputs_are_only_resized():
    image = np.full((90, 70, 3), 200, np.uint8)
    result = FaceAligner([DLIB_150, ARCFACE_112]).resize_only(image)
    assert result.status is FaceStatus.PRE_ALIGNED
    assert [c.shape for c in result.crops] == [(150, 150, 3), (112, 112, 3)]
    assert resize_square(image, 70).shape == (70, 70, 3)


def test_template_warp_puts_landmarks_on_the_template():
    # Draw five dots, warp them with their own positions: they must land on the template.
    rng = np.random.default_rng(2)
    points = ARCFACE_TEMPLATE_112 * 1.7 + np.array([30.0, 12.0]) + rng.normal(0, 0.01, (5, 2))
    image = np.zeros((260, 260, 3), np.uint8)
    for x, y in points:
        image[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2] = 255
    crop = warp_to_template(image, points, ARCFACE_TEMPLATE_112, 112)
    for x, y in ARCFACE_TEMPLATE_112:
        assert crop[int(round(y)), int(round(x))].max() > 100


def _lfw_image(lfw_dir, name="Aaron_Eckhart", number=1):
    return load_image_rgb(lfw_dir / name / f"{name}_{number:04d}.jpg")


@pytest.mark.shared_data
def test_real_face_is_found_and_cut(lfw_dir):
    result = FaceAligner([DLIB_150, FACERES_224, ARCFACE_112]).align(_lfw_image(lfw_dir))
    assert result.status in (FaceStatus.OK, FaceStatus.MULTIPLE)
    assert result.faces_found >= 1
    left, top, right, bottom = result.box
    assert 40 < left < right < 210 and 40 < top < bottom < 210  # LFW frames are centred


@pytest.mark.shared_data
def test_grey_and_odd_sized_photos_still_align(lfw_dir):
    image = _lfw_image(lfw_dir)
    grey = np.repeat(image.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    odd = np.asarray(Image.fromarray(image).resize((333, 211)))
    aligner = FaceAligner([DLIB_150])
    assert aligner.align(grey).status.usable
    assert aligner.align(odd).status.usable


@pytest.mark.shared_data
def test_a_centred_face_wins_over_a_larger_bystander(lfw_dir):
    big = np.asarray(Image.fromarray(_lfw_image(lfw_dir)).resize((300, 300)))
    centre = np.asarray(Image.fromarray(_lfw_image(lfw_dir, "Abel_Pacheco")).resize((240, 240)))
    canvas = np.zeros((300, 700, 3), np.uint8)
    canvas[:, :300] = big
    canvas[30:270, 230:470] = centre
    result = FaceAligner([DLIB_150]).align(canvas)
    assert result.status is FaceStatus.MULTIPLE and result.faces_found == 2
    left, _, right, _ = result.box
    assert left <= 350 <= right  # the face covering the centre, though the other is larger


@pytest.mark.shared_data
def test_several_faces_none_central_take_the_largest(lfw_dir):
    big = _lfw_image(lfw_dir)
    small = np.asarray(Image.fromarray(_lfw_image(lfw_dir, "Abel_Pacheco")).resize((170, 170)))
    canvas = np.zeros((250, 450, 3), np.uint8)
    canvas[:, :250] = big
    canvas[40:210, 270:440] = small
    result = FaceAligner([DLIB_150]).align(canvas)
    assert result.status is FaceStatus.MULTIPLE and result.faces_found == 2
    assert result.box[2] < 250  # the left (larger) face was used
