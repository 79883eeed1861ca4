"""The YAML config groups, shipped inside the package so an installed ginr composes them (Hydra)."""
