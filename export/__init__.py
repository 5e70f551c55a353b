"""ONNX export, verified model bundles and their registry, ONNX Runtime sessions.

Export-time modules (``bundle``, ``onnx_export``, ``optimize``, ``bench_encoder``) import torch;
the worker-side modules (``runtime``, ``sessions``, ``registry``, ``integrity``, ``manifest``,
``signatures``, ``comment_tokenizer``) never do, so a worker image needs no torch.
"""
