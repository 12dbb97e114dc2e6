"""One way to open an onnxruntime session, for every ONNX model fvr-audit runs."""

from __future__ import annotations

import os


def cpu_session(model: str | os.PathLike[str] | bytes, threads: int, *, quiet: bool = False):
    """An onnxruntime CPU session with ``threads`` intra-op threads and a single inter-op thread
    (more inter-op threads only contend for the same few cores). ``quiet``: log errors only
    (onnxruntime warns about benign details of user graphs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if quiet:
        options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
