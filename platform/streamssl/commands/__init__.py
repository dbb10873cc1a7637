"""CLI sub-commands, one module each; see streamssl.cli."""
