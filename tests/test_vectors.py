"""Feature-vector databases: loading, validation messages, ``fvr-audit vectors inspect``.

Every bad input is checked through the CLI, on the exact ``error: ...`` line and exit code 2.
Every CLI run also checks that nothing in the input's folder was created or modified.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fvr_audit.cli.app import app
from fvr_audit.errors import InputError
from fvr_audit.vectors import VectorDatabase, checks, load_vectors

runner = CliRunner()


# --------------------------------------------------------------------------- helpers


def unit_vectors(n: int = 12, dim: int = 8, seed: int = 0, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(dtype)


def folder_state(folder: Path) -> dict[str, tuple[int, int, str]]:
    """name -> (size, mtime_ns, sha256) of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def inspect_cli(path: Path, *args: str):
    """Run ``fvr-audit vectors inspect PATH ARGS``; assert it left the input's folder untouched."""
    folder = path.parent
    before = folder_state(folder) if folder.exists() else None
    result = runner.invoke(app, ["vectors", "inspect", str(path), *args])
    if before is not None:
        assert folder_state(folder) == before, "inspect created or modified files next to its input"
    return result


def assert_cli_error(path: Path, message: str, *args: str) -> None:
    """The CLI fails with exit code 2 and exactly ``error: <path>: <message>`` on stderr."""
    result = inspect_cli(path, *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.strip() == f"error: {path}: {message}"
    assert len(result.stderr.strip().splitlines()) == 1


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Inputs live alone in their own folder, so the no-write check sees only them."""
    path = tmp_path / "in"
    path.mkdir()
    return path


# --------------------------------------------------------------------------- files that are not databases


def test_missing_file(folder: Path) -> None:
    assert_cli_error(folder / "nope.npy", "no such file; check the path")


def test_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "db.npy"
    result = inspect_cli(path)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {path}: no such file; check the path"
    assert not path.parent.exists()


def test_directory(folder: Path) -> None:
    (folder / "db.npy").mkdir()
    assert_cli_error(folder / "db.npy", "is a directory; give a .npy or .npz file")


def test_empty_file(folder: Path) -> None:
    (folder / "db.npy").write_bytes(b"")
    assert_cli_error(
        folder / "db.npy", "the file is empty (0 bytes); export the vectors again with numpy.save"
    )


def test_not_numpy(folder: Path) -> None:
    (folder / "db.npy").write_text("id,x,y\n1,0.5,0.5\n")
    assert_cli_error(
        folder / "db.npy",
        "not a NumPy .npy or .npz file (it starts with b'id,x,y\\n1'); "
        "save the vectors with numpy.save (.npy) or numpy.savez (.npz)",
    )


def test_pickle_file_is_never_unpickled(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    (folder / "db.npy").write_bytes(pickle.dumps([[1.0, 2.0]], protocol=4))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    assert_cli_error(
        folder / "db.npy",
        "is a Python pickle, not a NumPy .npy/.npz file; fvr-audit never unpickles untrusted files; "
        "save the vectors with numpy.save or numpy.savez",
    )


def test_truncated_npy_data(folder: Path) -> None:
    data = npy_bytes(unit_vectors(12, 8))  # 128-byte header + 384 bytes of data
    (folder / "db.npy").write_bytes(data[:300])
    assert_cli_error(
        folder / "db.npy",
        "truncated: the header declares shape (12, 8) float32 (384 bytes of data) but only 172 bytes are "
        "present; copy or export the file again",
    )


def test_truncated_npy_header(folder: Path) -> None:
    (folder / "db.npy").write_bytes(npy_bytes(unit_vectors())[:40])
    assert_cli_error(
        folder / "db.npy",
        "truncated or corrupt .npy header (EOF: reading array header, expected 118 bytes got 30); "
        "copy or export the file again",
    )


def test_truncated_npy_magic(folder: Path) -> None:
    (folder / "db.npy").write_bytes(b"\x93NUMP")
    assert_cli_error(
        folder / "db.npy",
        "truncated .npy file (5 bytes, shorter than the .npy header); copy or export the file again",
    )


def test_unsupported_npy_version(folder: Path) -> None:
    data = bytearray(npy_bytes(unit_vectors()))
    data[6] = 9  # format version 9.0
    (folder / "db.npy").write_bytes(bytes(data))
    assert_cli_error(folder / "db.npy", "unsupported .npy format version 9.0; save it again with numpy.save")


def test_truncated_npz(folder: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, vectors=unit_vectors(100, 16))
    (folder / "db.npz").write_bytes(buffer.getvalue()[:3000])  # the central directory is gone
    assert_cli_error(
        folder / "db.npz",
        "cannot read the .npz archive (File is not a zip file); the file is truncated or corrupt; "
        "copy or export it again",
    )


def test_npz_stored_member_shorter_than_its_header(folder: Path) -> None:
    # A zip that is itself intact, holding a .npy whose data is cut short.
    with zipfile.ZipFile(folder / "db.npz", "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("vectors.npy", npy_bytes(unit_vectors(12, 8))[:300])
    assert_cli_error(
        folder / "db.npz",
        "'vectors': truncated: the header declares shape (12, 8) float32 (384 bytes of data) but only 172 "
        "bytes are present; copy or export the file again",
    )


def test_npz_corrupt_compressed_member(folder: Path) -> None:
    path = folder / "db.npz"
    np.savez_compressed(path, vectors=unit_vectors(200, 16))
    data = bytearray(path.read_bytes())
    data[400:420] = b"\x00" * 20  # inside the deflate stream, after the .npy header
    path.write_bytes(bytes(data))
    result = inspect_cli(path)
    assert result.exit_code == 2
    line = result.stderr.strip()
    # The reason in parentheses comes from zlib/zipfile and varies with their versions.
    assert line.startswith(f"error: {path}: 'vectors': cannot decompress (")
    assert line.endswith("); the file is truncated or corrupt; copy or export it again")


def test_npz_member_that_is_not_npy(folder: Path) -> None:
    with zipfile.ZipFile(folder / "db.npz", "w") as zf:
        zf.writestr("vectors.npy", b"not an array at all")
    assert_cli_error(
        folder / "db.npz",
        "'vectors': truncated or corrupt .npy header (the magic string is not correct; expected "
        "b'\\x93NUMPY', got b'not an'); copy or export the file again",
    )


# --------------------------------------------------------------------------- shape, dtype, objects


def test_one_dimensional(folder: Path) -> None:
    np.save(folder / "db.npy", unit_vectors(1, 512)[0])
    assert_cli_error(
        folder / "db.npy",
        "expected a 2-D array (N vectors x D dimensions), got a 1-D array of shape (512,); "
        "save a single vector as vectors.reshape(1, -1)",
    )


def test_three_dimensional(folder: Path) -> None:
    np.save(folder / "db.npy", unit_vectors(20, 512).reshape(10, 2, 512))
    assert_cli_error(
        folder / "db.npy",
        "expected a 2-D array (N vectors x D dimensions), got a 3-D array of shape (10, 2, 512); "
        "reshape it to N x D, e.g. vectors.reshape(-1, 512)",
    )


def test_scalar(folder: Path) -> None:
    np.save(folder / "db.npy", np.float32(1.0))
    assert_cli_error(
        folder / "db.npy",
        "expected a 2-D array (N vectors x D dimensions), got a 0-D array of shape (); "
        "save an N x D array of vectors, not a scalar",
    )


def test_dimension_mismatch(folder: Path) -> None:
    np.save(folder / "db.npy", unit_vectors(4, 128))
    assert_cli_error(
        folder / "db.npy",
        "the vectors have dimension 128 but the extractor is expected to produce 512-dimensional vectors; "
        "give vectors made by that extractor, or choose the extractor that made these",
        "--expected-dim",
        "512",
    )


def test_dimension_mismatch_names_the_extractor(folder: Path) -> None:
    np.save(folder / "db.npy", unit_vectors(4, 128))
    with pytest.raises(InputError) as caught:
        load_vectors(folder / "db.npy", expected_dim=512, extractor_name="arcface-r100")
    assert str(caught.value) == (
        f"{folder / 'db.npy'}: the vectors have dimension 128 but extractor 'arcface-r100' produces "
        "512-dimensional vectors; give vectors made by that extractor, or choose the extractor that made these"
    )


def test_no_dimension_check_by_default(folder: Path) -> None:
    np.save(folder / "db.npy", unit_vectors(4, 128))
    assert load_vectors(folder / "db.npy").dim == 128
    assert load_vectors(folder / "db.npy", expected_dim=128).dim == 128


INT_HINT = (
    "if they are quantised codes, dequantise them first, otherwise convert with vectors.astype(numpy.float32)"
)


@pytest.mark.parametrize(
    ("array", "dtype_name", "hint"),
    [
        (np.ones((3, 4), np.int64), "int64", INT_HINT),
        (np.ones((3, 4), np.uint8), "uint8", INT_HINT),
        (
            np.ones((3, 4), bool),
            "bool",
            "binary codes are not supported; export the float vectors the codes were made from",
        ),
        (
            np.ones((3, 4), np.complex64),
            "complex64",
            "complex values are not feature vectors; export the real-valued vectors",
        ),
        (np.full((3, 4), "a"), "str32", "save a plain N x D float array with numpy.save"),
    ],
    ids=["int64", "uint8", "bool", "complex64", "str"],
)
def test_non_float_dtypes(folder: Path, array: np.ndarray, dtype_name: str, hint: str) -> None:
    np.save(folder / "db.npy", array)
    assert_cli_error(
        folder / "db.npy",
        f"has dtype {dtype_name}, not floating point; feature vectors must be float16, float32 or float64; {hint}",
    )


OBJECTS = "contains Python objects (pickled); fvr-audit never unpickles untrusted files; save a numeric or string array instead"


def test_object_array_npy(folder: Path) -> None:
    # Writing (never loading) a hostile pickled file, to prove the loader refuses it.
    hostile_write = {"allow_pickle": True}
    np.save(folder / "db.npy", np.array([[1.0, None]], dtype=object), **hostile_write)
    assert_cli_error(folder / "db.npy", OBJECTS)


def test_object_array_npz_vectors(folder: Path) -> None:
    np.savez(folder / "db.npz", vectors=np.array([[1.0, None]], dtype=object))
    assert_cli_error(folder / "db.npz", f"'vectors': {OBJECTS}")


def test_object_labels_compressed(folder: Path) -> None:
    labels = np.array(["alice", 3], dtype=object)
    np.savez_compressed(folder / "db.npz", vectors=unit_vectors(2, 4), labels=labels)
    assert_cli_error(folder / "db.npz", f"'labels': {OBJECTS}")


def test_empty_database(folder: Path) -> None:
    np.save(folder / "db.npy", np.zeros((0, 512), np.float32))
    assert_cli_error(
        folder / "db.npy", "the database is empty (shape (0, 512): no vectors); extract at least one vector"
    )


def test_zero_dimensions(folder: Path) -> None:
    np.save(folder / "db.npy", np.zeros((5, 0), np.float32))
    assert_cli_error(
        folder / "db.npy",
        "the vectors have no dimensions (shape (5, 0)); export the extractor's output vectors",
    )


# --------------------------------------------------------------------------- row checks


def test_nan_and_inf(folder: Path) -> None:
    vectors = unit_vectors(50, 8)
    vectors[17, 3] = np.nan
    vectors[30, 0] = np.inf
    vectors[31, 7] = -np.inf
    np.save(folder / "db.npy", vectors)
    assert_cli_error(
        folder / "db.npy",
        "3 rows contain NaN or Inf (first at row index 17); remove or re-extract those rows",
    )


def test_single_nan_in_npz(folder: Path) -> None:
    vectors = unit_vectors(50, 8)
    vectors[4, 1] = np.nan
    np.savez(folder / "db.npz", vectors=vectors)
    assert_cli_error(
        folder / "db.npz",
        "'vectors': 1 row contains NaN or Inf (first at row index 4); remove or re-extract those rows",
    )


def test_zero_rows(folder: Path) -> None:
    vectors = unit_vectors(50, 8)
    vectors[[5, 6, 40]] = 0
    vectors[41] = -0.0
    np.save(folder / "db.npy", vectors)
    assert_cli_error(
        folder / "db.npy",
        "4 rows are all zeros (first at row index 5); a zero vector usually means a failed extraction; "
        "remove or re-extract those rows",
    )


def test_duplicates_are_an_error(folder: Path) -> None:
    vectors = unit_vectors(50, 8)
    vectors[20] = vectors[9]
    vectors[33] = vectors[9]
    vectors[45] = vectors[2]
    np.save(folder / "db.npy", vectors)
    assert_cli_error(
        folder / "db.npy",
        "3 rows duplicate an earlier row (first: row index 20 equals row index 9); exact duplicates distort "
        "top-K metrics; remove them, or pass --allow-duplicates to only warn",
    )


def test_duplicates_allowed_become_a_warning(folder: Path) -> None:
    vectors = unit_vectors(50, 8)
    vectors[20] = vectors[9]
    np.save(folder / "db.npy", vectors)
    warning = (
        f"{folder / 'db.npy'}: 1 row duplicates an earlier row (first: row index 20 equals row index 9); "
        "each copy counts separately in top-K metrics"
    )
    db = load_vectors(folder / "db.npy", allow_duplicates=True)
    assert db.warnings == (warning,)
    result = inspect_cli(folder / "db.npy", "--allow-duplicates", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["duplicates"] == {"count": 1, "first_pair": [9, 20]}
    assert summary["warnings"] == [warning]


def test_negative_zero_counts_as_a_duplicate(folder: Path) -> None:
    vectors = unit_vectors(5, 4)
    vectors[0, 1] = 0.0
    vectors[3] = vectors[0]
    vectors[3, 1] = -0.0
    np.save(folder / "db.npy", vectors)
    with pytest.raises(InputError, match=r"first: row index 3 equals row index 0"):
        load_vectors(folder / "db.npy")


def test_float64_beyond_float32_range(folder: Path) -> None:
    vectors = unit_vectors(10, 4, dtype=np.float64)
    vectors[6, 2] = 1e39
    np.save(folder / "db.npy", vectors)
    assert_cli_error(
        folder / "db.npy",
        "1 row has values beyond the float32 range (first at row index 6); rescale the vectors "
        "(e.g. L2-normalise them)",
    )


def test_check_false_skips_row_checks(folder: Path) -> None:
    vectors = unit_vectors(10, 4)
    vectors[2] = np.nan
    np.save(folder / "db.npy", vectors)
    db = load_vectors(folder / "db.npy", check=False)
    assert db.scan is None and db.n == 10


# --------------------------------------------------------------------------- .npz structure and per-row arrays


def test_npz_without_vectors(folder: Path) -> None:
    np.savez(folder / "db.npz", embeddings=unit_vectors(), labels=np.arange(12))
    assert_cli_error(
        folder / "db.npz",
        "no 'vectors' array in the .npz (it holds: 'embeddings', 'labels'); "
        "save it with numpy.savez(path, vectors=..., labels=...)",
    )


def test_empty_npz(folder: Path) -> None:
    np.savez(folder / "db.npz")
    assert_cli_error(
        folder / "db.npz",
        "no 'vectors' array in the .npz (it holds: no arrays); save it with numpy.savez(path, vectors=..., labels=...)",
    )


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "compressed"])
@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("labels", np.arange(11), "has 11 entries but 'vectors' has 12 rows; give exactly one entry per row"),
        (
            "labels",
            np.arange(12.0),
            "has dtype float64; labels must be strings or integers (the identity of each row)",
        ),
        (
            "labels",
            np.ones(12, bool),
            "has dtype bool; labels must be strings or integers (the identity of each row)",
        ),
        (
            "labels",
            np.arange(24).reshape(12, 2),
            "has shape (12, 2); expected one entry per row, shape (12,)",
        ),
        (
            "paths",
            np.array(["a.jpg"] * 13),
            "has 13 entries but 'vectors' has 12 rows; give exactly one entry per row",
        ),
        ("paths", np.arange(12), "has dtype int64; paths must be strings (the image each row came from)"),
        ("ids", np.arange(10), "has 10 entries but 'vectors' has 12 rows; give exactly one entry per row"),
        (
            "ids",
            np.arange(12.0),
            "has dtype float64; ids must be integers or strings (one identifier per row)",
        ),
    ],
    ids=[
        "labels-length",
        "labels-float",
        "labels-bool",
        "labels-2d",
        "paths-length",
        "paths-int",
        "ids-length",
        "ids-float",
    ],
)
def test_bad_row_arrays(folder: Path, compressed: bool, key: str, value: np.ndarray, message: str) -> None:
    save = np.savez_compressed if compressed else np.savez
    save(folder / "db.npz", vectors=unit_vectors(12, 8), **{key: value})
    assert_cli_error(folder / "db.npz", f"'{key}': {message}")


def test_labels_bytes_not_utf8(folder: Path) -> None:
    np.savez(folder / "db.npz", vectors=unit_vectors(2, 4), labels=np.array([b"ok", b"\xff\xfe"]))
    assert_cli_error(
        folder / "db.npz", "'labels': holds bytes that are not valid UTF-8; save it as a str array"
    )


# --------------------------------------------------------------------------- happy paths


def test_npy_is_memory_mapped(folder: Path) -> None:
    vectors = unit_vectors(100, 16)
    np.save(folder / "db.npy", vectors)
    db = load_vectors(folder / "db.npy")
    assert isinstance(db.vectors, np.memmap)
    assert isinstance(db.vectors._mmap, mmap.mmap)
    assert db.is_memory_mapped and db.storage == "memory-mapped" and db.format == "npy"
    assert not db.vectors.flags.writeable
    assert np.array_equal(db.vectors, vectors)  # still right after the pages were released
    assert (db.n, db.dim, db.has_labels, db.has_paths, db.has_ids) == (100, 16, False, False, False)
    assert db.warnings == ()


def test_npz_stored_is_memory_mapped_in_place(folder: Path) -> None:
    vectors = unit_vectors(30, 16)
    labels = np.array([f"person_{i // 3}" for i in range(30)])
    paths = np.array([f"img/{i}.jpg" for i in range(30)])
    np.savez(folder / "db.npz", vectors=vectors, labels=labels, paths=paths, ids=np.arange(100, 130))
    db = load_vectors(folder / "db.npz")
    assert isinstance(db.vectors, np.memmap) and db.storage == "memory-mapped"
    assert isinstance(db.labels, np.memmap)
    assert np.array_equal(db.vectors, vectors)
    assert db.labels.tolist() == labels.tolist() and db.paths.tolist() == paths.tolist()
    assert db.ids.tolist() == list(range(100, 130))
    assert db.identity_counts() == {f"person_{i}": 3 for i in range(10)}


def test_npz_compressed_is_loaded(folder: Path) -> None:
    vectors = unit_vectors(30, 16)
    np.savez_compressed(folder / "db.npz", vectors=vectors, labels=np.repeat(np.arange(10), 3))
    db = load_vectors(folder / "db.npz")
    assert not isinstance(db.vectors, np.memmap) and db.storage == "loaded"
    assert not db.vectors.flags.writeable
    assert np.array_equal(db.vectors, vectors)
    result = inspect_cli(folder / "db.npz", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["storage"] == "loaded"
    assert summary["storage_note"] == (
        "'vectors' is compressed in the .npz (numpy.savez_compressed); save with numpy.savez or numpy.save "
        "to memory-map it"
    )


def test_integer_labels_become_strings(folder: Path) -> None:
    np.savez(folder / "db.npz", vectors=unit_vectors(4, 8), labels=np.array([7, 7, 12, 3], np.uint16))
    db = load_vectors(folder / "db.npz")
    assert db.labels.dtype.kind == "U"
    assert db.labels.tolist() == ["7", "7", "12", "3"]


def test_bytes_labels_are_decoded(folder: Path) -> None:
    np.savez(folder / "db.npz", vectors=unit_vectors(2, 8), labels=np.array([b"al", b"bo"]))
    assert load_vectors(folder / "db.npz").labels.tolist() == ["al", "bo"]


@pytest.mark.parametrize("dtype", ["<f2", "<f8", ">f4", ">f8"])
def test_other_float_dtypes_become_float32(folder: Path, dtype: str) -> None:
    vectors = unit_vectors(20, 8, dtype=np.float64).astype(dtype)
    np.save(folder / "db.npy", vectors)
    db = load_vectors(folder / "db.npy")
    assert db.vectors.dtype == np.float32 and db.vectors.dtype.isnative
    assert db.storage == "loaded" and db.source_dtype == np.dtype(dtype)
    assert not db.vectors.flags.writeable
    np.testing.assert_array_equal(db.vectors, vectors.astype(np.float32))
    assert db.scan.norms.l2_normalised  # float16 gets a looser unit-norm tolerance


def test_native_float32_is_not_copied(folder: Path) -> None:
    np.save(folder / "db.npy", unit_vectors())
    db = load_vectors(folder / "db.npy")
    assert db.source_dtype == np.float32 and db.storage_note == "the .npy file"


def test_fortran_order_warns(folder: Path) -> None:
    np.save(folder / "db.npy", np.asfortranarray(unit_vectors(10, 4)))
    db = load_vectors(folder / "db.npy")
    assert db.warnings == (
        (
            f"{folder / 'db.npy'}: vectors are stored column-major (Fortran order); searches will copy them; "
            "save numpy.ascontiguousarray(vectors)"
        ),
    )


def test_format_comes_from_content_not_name(folder: Path) -> None:
    np.savez(folder / "vectors.bin", vectors=unit_vectors())
    (folder / "vectors.bin.npz").rename(folder / "vectors.bin")
    db = load_vectors(folder / "vectors.bin")
    assert db.format == "npz" and db.is_memory_mapped


def test_metadata_warnings(folder: Path) -> None:
    labels = np.array(["a", "", "b", ""])
    np.savez(
        folder / "db.npz",
        vectors=unit_vectors(4, 8),
        labels=labels,
        ids=np.array([1, 1, 2, 3]),
        junk=np.ones(2),
    )
    path = folder / "db.npz"
    assert load_vectors(path).warnings == (
        f"{path}: ignored array(s) 'junk'; fvr-audit reads vectors, labels, paths, ids",
        f"{path}: 'labels': 2 rows have an empty label (first at row index 1); they all count as one identity",
        f"{path}: 'ids': 1 row repeats an earlier row's id (first at row index 1); rows cannot be told apart by id",
    )


def test_inspect_json(folder: Path) -> None:
    vectors = unit_vectors(10, 8)
    vectors[9] *= 2.0  # one row off unit norm
    labels = np.array(["a", "a", "a", "b", "b", "c", "d", "d", "d", "d"])
    np.savez(folder / "db.npz", vectors=vectors, labels=labels)
    result = inspect_cli(folder / "db.npz", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    summary = json.loads(result.stdout)
    norms = summary.pop("norms")
    assert norms["min"] == pytest.approx(1.0, abs=1e-6)
    assert norms["max"] == pytest.approx(2.0, abs=1e-6)
    assert norms["median"] == pytest.approx(1.0, abs=1e-6)
    assert (norms["l2_normalised"], norms["rows_not_unit_norm"]) == (False, 1)
    assert summary == {
        "path": str(folder / "db.npz"),
        "format": "npz",
        "count": 10,
        "dim": 8,
        "dtype": "float32",
        "storage": "memory-mapped",
        "storage_note": "an uncompressed .npz member, in place",
        "labels": {
            "identities": 4,
            "images_per_identity": {"min": 1, "median": 2.5, "max": 4},
            "identities_with_2_or_more": 3,
            "vectors_of_those": 9,
        },
        "metadata": {},
        "has_paths": False,
        "has_ids": False,
        "duplicates": {"count": 0, "first_pair": None},
        "warnings": [],
    }


def test_scalar_members_are_metadata(folder: Path) -> None:
    # What `fvr-audit extract` writes next to the vectors.
    np.savez(
        folder / "db.npz",
        vectors=unit_vectors(4, 8),
        extractor=np.array("dlib-resnet"),
        fvr_audit_version=np.array("0.1.0"),
        seed=np.array(7),
    )
    db = load_vectors(folder / "db.npz")
    assert db.metadata == {"extractor": "dlib-resnet", "fvr_audit_version": "0.1.0", "seed": 7}
    assert db.extractor == "dlib-resnet" and db.warnings == ()
    summary = json.loads(inspect_cli(folder / "db.npz", "--json").stdout)
    assert summary["metadata"] == db.metadata


def test_inspect_table_on_stdout(folder: Path) -> None:
    np.savez(folder / "db.npz", vectors=unit_vectors(6, 8), labels=np.array([1, 1, 2, 2, 3, 3]))
    result = inspect_cli(folder / "db.npz")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    text = result.stdout
    for expected in (
        "6 x 8 float32 (npz)",
        "memory-mapped",
        "normalised: yes",
        "identities",
        "min 2, median 2, max 2",
    ):
        assert expected in text


# --------------------------------------------------------------------------- properties of the row checks


def reference_duplicates(vectors: np.ndarray) -> tuple[int, tuple[int, int] | None]:
    """Brute force: rows equal (as numbers) to an earlier row."""
    first_seen: dict[bytes, int] = {}
    later: list[tuple[int, int]] = []
    for index, row in enumerate(vectors):
        key = (row + np.float32(0)).tobytes()
        if key in first_seen:
            later.append((first_seen[key], index))
        else:
            first_seen[key] = index
    return len(later), (later[0] if later else None)


@pytest.mark.parametrize("seed", range(25))
def test_scan_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, dim = int(rng.integers(2, 300)), int(rng.integers(1, 40))
    # Few distinct values, so duplicates also happen by chance; odd dims exercise the hash padding.
    vectors = rng.integers(-2, 3, size=(n, dim)).astype(np.float32) * np.float32(0.25)
    for _ in range(int(rng.integers(0, 5))):
        vectors[rng.integers(n)] = vectors[rng.integers(n)]
    for _ in range(int(rng.integers(0, 3))):
        vectors[rng.integers(n), rng.integers(dim)] = rng.choice([np.nan, np.inf, -np.inf])
    chunk_bytes = int(rng.integers(1, 4 * dim * 20))  # from one row per chunk to ~20
    scan = checks.scan_rows(vectors, chunk_bytes=chunk_bytes)

    finite = np.isfinite(vectors).all(axis=1)
    zero = (vectors == 0).all(axis=1)
    assert scan.nonfinite == checks.RowFinding.of(~finite)
    assert scan.zero == checks.RowFinding.of(zero)
    if finite.all():  # with NaN rows the load fails before duplicates matter
        assert (scan.duplicates.count, scan.duplicates.first_pair) == reference_duplicates(vectors)
    norms = np.linalg.norm(vectors[finite].astype(np.float64), axis=1)
    if norms.size:
        assert scan.norms.min == pytest.approx(norms.min()) and scan.norms.max == pytest.approx(norms.max())


@pytest.mark.parametrize("bucket_count", [1, 2, 7])
def test_duplicates_survive_hash_collisions(bucket_count: int) -> None:
    rng = np.random.default_rng(bucket_count)
    vectors = rng.integers(0, 3, size=(200, 3)).astype(np.float32)
    # Deliberately terrible hashes (still equal for equal rows): different rows collide in a few buckets.
    hashes = (vectors.sum(axis=1).astype(np.uint64) % np.uint64(bucket_count)).astype(np.uint64)
    finding = checks.find_duplicates(vectors, hashes, batch_rows=7)
    assert (finding.count, finding.first_pair) == reference_duplicates(vectors)


def test_scan_does_not_copy_the_database(folder: Path) -> None:
    # 16 MB of vectors checked in 1 MiB chunks: the peak allocation stays a few chunks, not the file.
    vectors = unit_vectors(8192, 512)
    np.save(folder / "db.npy", vectors)
    del vectors
    tracemalloc.start()
    try:
        db = load_vectors(folder / "db.npy")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    file_size = (folder / "db.npy").stat().st_size
    assert db.is_memory_mapped
    assert peak < file_size / 4, f"peak allocation {peak} bytes for a {file_size}-byte file"


def test_rows_phrase_grammar() -> None:
    assert checks.rows_phrase(1, "is", "are") == "1 row is"
    assert checks.rows_phrase(0, "is", "are") == "0 rows are"


def test_vector_database_is_frozen() -> None:
    db = VectorDatabase(Path("x.npy"), np.eye(2, dtype=np.float32))
    with pytest.raises(AttributeError):
        db.vectors = np.eye(3, dtype=np.float32)  # type: ignore[misc]
