"""Generated code for proto package `observer` (see proto/observer/)."""
