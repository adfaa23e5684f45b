"""Generated code for proto package `flow` (see proto/flow/)."""
