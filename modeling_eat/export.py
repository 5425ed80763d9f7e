"""`python -m modeling_eat.export`: a saved EAT folder as one ONNX or torch.export graph (see
`modeling_eat.deployment`)."""

from .deployment.cli import export_main as main


if __name__ == "__main__":
    main()
