"""TensorFlow Serving's REST API over kscore: ``POST /v1/models/{name}:predict`` in the row
(``instances``) and columnar (``inputs``) forms, and the model status. A thin adapter over
``api.inference.score``, i.e. ``/api/v1`` online scoring of a deployment by name or id.
"""
