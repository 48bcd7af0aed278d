"""Census income DNN trainer (PyTorch): ``python -m trainer.task``; exports ONNX."""
