"""Multi-task face model (age, gender, more heads by config): training, evaluation, ONNX export.

Torch-free at import: the analysis path imports ``model.preprocess``, ``model.datasets`` and
``model.metrics`` without torch; ``train_config`` (the typed training config), ``template``,
``quantize`` and ``throughput`` need none either. With torch: ``network`` (ResNet backbone,
heads, ensembles), ``losses``, ``augment``, ``eyeglasses`` and ``face_masks`` (drawn onto
faces), ``training`` (the parts that ``jobs.train`` puts together) and ``onnx_export``.
"""
