"""Trained models at test time: finding and loading them, translate and interpolate, export."""
