"""One file per backend. Nothing here is imported until the registry resolves a name."""
