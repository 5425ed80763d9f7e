"""Deployment: EAT models as exported graphs (ONNX, torch.export), with or without the feature extractor inside."""
