"""Drop-in ``torch.nn`` pieces built from the shipped specs.

``graphconv.nn.functional`` has functions with torch.nn.functional's signatures and semantics (``conv2d``);
modules (``graphconv.nn.Conv2d``) are built on them. Importing this imports torch.
"""
from graphconv.nn import functional
from graphconv.nn.spec_module import SpecModule, from_spec
from graphconv.nn.modules import Conv1d, Conv2d, ConvTranspose2d, Linear

__all__ = ["functional", "Conv1d", "Conv2d", "ConvTranspose2d", "Linear", "from_spec", "SpecModule"]
