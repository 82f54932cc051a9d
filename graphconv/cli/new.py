"""``graphconv new NAME``: write a spec skeleton, NAME.mmd — front matter with every key (the unused ones
commented out, each saying what it is for) and a diagram of one op between an input and an output. It passes
``graphconv check`` as written: edit it from there.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from graphconv.cli.common import EXIT_OK
from graphconv.errors import SpecError
from graphconv.syntax.expr import NAME

SKELETON = """\
---
title: {name}
graphconv:
  # uses: [graphconv:linear]   # other specs called like ops: a file next to this one, or graphconv: for the library
  # inputs: name -> shape pattern, in call order. A name binds a dim, `_` matches any size, `...batch` any number
  # of dims (the group batch). {{shape: [b], dtype: int, range: [0, classes]}} declares an int (or bool) input
  # and the range its test data is drawn from.
  inputs:
    input: [...batch, features]
  # outputs: [output]          # only when the outputs are not simply the tensors no op consumes
  # attrs: the op's keyword arguments and their defaults
  attrs: {{scale: 2.0}}
  # dims: derived values. A dim that sizes something is an integer (use //); others may be floats:
  # dims: {{half: features // 2, inv_sqrt: 1 / features ** 0.5}}
  # shapes: the shape any tensor must have (checked by graphconv run and on the first call)
  shapes:
    output: [...batch, features]
  # ops: spec-local ops in terms of registered ones (graphconv ops lists them)
  ops:
    times_scale: mul_scalar(value=scale)
  # example: dims for graphconv run and check (a group of dims as a list; an input without a pattern: its shape)
  example: {{batch: [2, 3], features: 4}}
  # params: [weight]           # the inputs graphconv.nn.from_spec makes parameters of a module
  # reference: the torch function to match (torch.nn.functional.gelu), or an expression over calls of them
  # (linear(gelu(input), weight)); args:/kwargs: map inputs, attrs and dims to its arguments; cases: more dims
  # and attrs to try
  reference:
    function: input * scale
    cases:
      - {{batch: [], scale: -1.5}}
---
graph LR
  X(input) --> S((times_scale)) --> Y(output)
"""


def add_parser(verbs: Any) -> None:
    new = verbs.add_parser("new", help="write a spec skeleton NAME.mmd that passes graphconv check")
    new.add_argument("name", help="the spec's name (the op's name when another spec uses it)")
    new.add_argument("-o", "--output", help="where to write it (default: NAME.mmd here)")
    new.add_argument("--force", action="store_true", help="overwrite an existing file")
    new.set_defaults(handler=cmd_new)


def cmd_new(args: argparse.Namespace) -> int:
    if not NAME.fullmatch(args.name):
        raise SpecError(f"{args.name!r} is not a spec name: letters, digits and _, not starting with a digit "
                        "(the name another spec's uses: calls it by)")
    path = Path(args.output or f"{args.name}.mmd")
    if path.exists() and not args.force:
        raise SpecError(f"{path} exists; pass --force to overwrite it")
    try:
        path.write_text(SKELETON.format(name=args.name), encoding="utf-8")
    except OSError as error:
        raise SpecError(f"cannot write {path}: {error}") from None
    print(f"wrote {path}: check it with graphconv check {path}, then make it your op")
    return EXIT_OK
