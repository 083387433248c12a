"""VisionLoop's reference detector: a small CenterNet in plain PyTorch, its targets, loss, training and export."""
