"""Inference backends behind one interface: ONNX Runtime in-process, or Triton over gRPC."""
