"""The fit() loop, the engine (optimizers, precision, EMA, gradient reduction), checkpoints, torchrun, the benchmark."""
