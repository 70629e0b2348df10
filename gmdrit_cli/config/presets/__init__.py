"""Preset YAML files (shipped inside the package as gmdrit_cli.config.presets)."""
