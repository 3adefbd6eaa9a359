"""The command-line layer: one module per command; each parses, calls the library, renders."""
