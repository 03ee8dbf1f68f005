"""The Open Inference Protocol (KServe V2) over kscore: health, model metadata and inference
at ``/v2``, JSON tensors and the binary tensor data extension, as Triton's ``tritonclient``
calls them. A thin adapter: a model is a deployment of the caller's instance (by name or id),
and inference is ``api.inference.score``, i.e. ``/api/v1`` online scoring.
"""
