"""`python -m modeling_eat.extract`: utterance and frame embeddings of audio files or a data set (see
`modeling_eat.inference.features` for what each clip gets)."""

from .inference.cli import extract_main as main


if __name__ == "__main__":
    main()
