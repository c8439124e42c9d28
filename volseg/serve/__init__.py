"""``volseg serve``: volseg's models, warm, behind MONAI Label's HTTP protocol, so 3D Slicer's MONAI Label module
segments with them without paying the start-up on every click (docs/slicer.md).

``server`` checks the start-up request and runs uvicorn; ``app`` holds the endpoints Slicer calls; ``warm_models``
opens each model once and segments one stored image; ``inference_queue`` runs one inference at a time with a
bounded wait; ``datastore`` stores uploads atomically under digests of their ids; ``auth`` and ``guard`` hold the
tokens, the body limit and the access log; ``refusal`` is the one-line 4xx every bad request gets.
"""
