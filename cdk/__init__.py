"""Parlor's infrastructure as CDK constructs, one per concern, composed in stack.py."""
