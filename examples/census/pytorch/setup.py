"""The PyTorch census trainer as an installable package (``--package-path`` style).

No install requirements: the runtime provides torch, numpy and onnx (plus onnxscript for
the exporter). They are listed as the ``runtime`` extra for a bare environment.
"""

from setuptools import find_packages, setup

setup(
    name="census-pytorch-trainer",
    version="0.1.0",
    description="Census income DNN trainer for mlengine (PyTorch, ONNX export)",
    packages=find_packages(include=["trainer", "trainer.*"]),
    python_requires=">=3.10",
    install_requires=[],
    extras_require={"runtime": ["torch", "numpy", "onnx", "onnxscript", "onnxruntime"]},
)
