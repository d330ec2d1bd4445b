"""Loading tokenizers: the bundled encodings, verified, and counting while one loads."""
