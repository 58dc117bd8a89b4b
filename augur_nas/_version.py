"""The package version, in a module of its own so that modules imported by ``augur_nas/__init__``
(the CLI, the ONNX writer's producer field) can import it at their top without waiting for the
package to finish importing."""

__version__ = "0.1.0"
