"""Sample flows: the payments story capture shipped with the package, and a flow generator."""
