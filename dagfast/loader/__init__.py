"""The loader: YAML text -> tree with positions -> spec -> checks -> the model."""
