"""Generated protobuf and gRPC modules of the Hubble API (do not edit).

Regenerate with ``python scripts/gen_protos.py``; sources are in proto/.
Generated with grpcio-tools 1.85.1.
"""
