"""The gmdrit model family."""
