"""The one config tree of dataclasses, presets in YAML, --set overrides."""
