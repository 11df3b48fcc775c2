"""Level 1: a packaged, tested FastAPI service for the penguin model (DevOps, not yet MLOps)."""
