"""IOS text: formats (hex blocks, fingerprints), parsers of device output, the trust rule, command tokens."""
