"""absl entrypoints: thin wrappers that parse flags and call into gentg_jax."""
