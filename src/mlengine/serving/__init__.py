"""Online prediction: framework loaders that turn JSON instances into predictions.

``mlengine.serving.onnx_model.OnnxModel`` serves ONNX models (the PyTorch census sample
exports one). Loaders import their framework lazily or in their own module, so importing
this package needs none of numpy, onnxruntime or scikit-learn.
"""
