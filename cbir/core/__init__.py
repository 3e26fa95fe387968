"""The bottom layer: small pieces every other layer may use (registries), importing nothing heavy."""
