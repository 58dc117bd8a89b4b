"""Importers and exporters: Caffe prototxt, ONNX, PyTorch (each imported lazily)."""
