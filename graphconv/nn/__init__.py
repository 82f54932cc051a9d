"""Drop-in ``torch.nn`` pieces built from the shipped specs.

``graphconv.nn.functional`` has functions with torch.nn.functional's signatures and semantics (``conv2d``);
modules (``graphconv.nn.Conv2d``) are built on them. Importing this imports torch.
"""
from graphconv.nn import functional

__all__ = ["functional"]
