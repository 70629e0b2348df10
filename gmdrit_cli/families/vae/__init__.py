"""The vae model family."""
