"""The reference detector (PyTorch): what the trainer trains and the converter exports."""
