"""Parlor on one machine: the embedded AWS, the local token issuer and `make up`."""
