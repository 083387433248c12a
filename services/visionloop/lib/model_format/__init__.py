"""The model format: model.json, the ONNX graph it describes, Triton's repository layout."""
