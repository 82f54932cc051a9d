"""Program → straight-line Python source: ``generate`` (in-process) and ``export`` (a standalone module)."""
from graphconv.compiler.codegen.generated import Errors, GeneratedCode, generate

__all__ = ["Errors", "GeneratedCode", "generate"]
