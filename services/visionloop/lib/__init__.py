"""VisionLoop's library layer: domain helpers that every service uses and no service owns.

Modules here import no service package (``visionloop.server.hub``, ``detector``, ``trainer``,
``converter``, ``annotator``, ``demo``): only third-party libraries, the generated contracts and
``visionloop.runtime.errors`` (so their refusals map to precise gRPC codes). ``tests/lib``
enforces the rule.

- ``images``: JPEG and PNG from bytes to pixels, with limits read from the header before any
  pixel is decoded and one orientation rule.
- ``onnx_graph``: an ONNX file's inputs, outputs and metadata, read without its weights, and
  model.json checked against them.
- ``ultralytics``: the model.json of an Ultralytics ONNX export, from its metadata and graph.
"""
