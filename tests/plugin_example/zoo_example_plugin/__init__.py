"""An example colorization-zoo plugin; its models are in ``registry.toml`` beside this file."""
