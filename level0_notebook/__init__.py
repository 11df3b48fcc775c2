"""Level 0: a manual notebook and a hand-made server."""
