"""Importers and exporters: Caffe prototxt, ONNX, PyTorch (onnx and torch themselves imported lazily, through _imports.optional)."""
