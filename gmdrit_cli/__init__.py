"""gmdrit: diverse unpaired image-to-image translation with Gaussian-mixture latent spaces."""

__version__ = "0.1.0"
