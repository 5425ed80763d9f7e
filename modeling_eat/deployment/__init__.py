"""Deployment: EAT models as exported graphs (ONNX, torch.export), with or without the feature extractor inside; int8
versions checked by the accuracy they keep; an exported classifier in the pipeline's place of the model."""
