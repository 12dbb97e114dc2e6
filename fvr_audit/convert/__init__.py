"""Model format converters that need no heavy toolchain.

- :mod:`fvr_audit.convert.tfjs_to_onnx`: a TensorFlow.js graph model (``model.json`` + weight
  shards) to ONNX, with the ``onnx`` package only (no TensorFlow, tensorflowjs or tf2onnx).
- :mod:`fvr_audit.convert.onnx_to_torch`: an ONNX graph run as a ``torch.nn.Module``, so that
  gradients can flow through a converted model (imports torch; import it only where needed).
"""
