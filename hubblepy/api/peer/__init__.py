"""Generated code for proto package `peer` (see proto/peer/)."""
