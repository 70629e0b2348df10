"""Neural-network building blocks and per-family network definitions (pure ``nn.Module`` code)."""
