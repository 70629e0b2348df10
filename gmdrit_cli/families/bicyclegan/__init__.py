"""The bicyclegan model family."""
