"""Built-in storage drivers, each one module and each registered as a plugin."""
