"""The mdmm model family."""
