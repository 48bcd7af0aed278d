"""Online prediction: framework loaders that turn JSON instances into predictions.

``mlengine.serving.predictor`` holds the contract (:class:`~.predictor.Predictor`), the
detection of a model directory's framework and :func:`~.predictor.load_predictor`. One
module per framework maps instances to its inputs and its outputs back to JSON:
``sklearn_model`` (pickles), ``xgboost_model``, ``lightgbm_model``, ``onnx_model``,
``torch_model``, ``tensorflow_model`` and ``custom_routine`` (with ``user_code`` for
``packageUris``); ``instances`` and ``outputs`` are the halves they share. Frameworks are
imported only when a model needs one, so importing this package needs none of them.
"""
