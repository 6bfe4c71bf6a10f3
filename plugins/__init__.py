"""Built-in provider plugins; each uses only `omnirelay.engine`'s public API."""
