"""Generated code for proto package `relay` (see proto/relay/)."""
