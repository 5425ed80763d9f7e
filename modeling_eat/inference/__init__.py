"""The inference workflow: embeddings of an encoder (`features`), the audio they are read from (`sources`), their
files (`storage`), the linear probe (`probe`), and the two commands (`cli`)."""
