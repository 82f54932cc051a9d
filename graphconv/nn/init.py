"""The initialisers a spec's ``params`` may name, for :func:`graphconv.nn.from_spec`.

    params: {weight: uniform_fan_in, bias: uniform_fan_in(weight), scale: ones, shift: zeros}

An initialiser is a call in the spec's expression language: ``uniform_fan_in`` is torch.nn's default for Linear
and Conv layers, the others are ``torch.nn.init``'s functions by their names without the trailing underscore
(``normal(std=0.02)``, ``kaiming_normal(mode='fan_out', nonlinearity='relu')``). Arguments may use the module's
attrs and dims, and name another parameter (``uniform_fan_in(weight)``). A parameter the spec gives no
initialiser gets ``uniform_fan_in`` if it has two dims or more, else ``zeros``. Whatever an initialiser cannot do
with its arguments (a negative ``std``, an infinite bound, a number where it wants a parameter) is a SpecError at
the spec's ``params`` entry.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch.nn import init

from graphconv.errors import SpecError
from graphconv.graph.opgraph import Spec
from graphconv.syntax.expr import Call, evaluate, show_value, suggest


def uniform_fan_in(tensor: torch.Tensor, of: torch.Tensor | None = None) -> torch.Tensor:
    """torch.nn's default for Linear and Conv: U(±1/√fan_in). Alone (a weight): ``kaiming_uniform_(a=√5)``,
    exactly as torch.nn.Conv2d calls it, so the same seed gives the same numbers; ``of`` another parameter (a
    bias): the bound from that parameter's fan-in, as torch.nn.Conv2d draws its bias."""
    if of is None:
        return init.kaiming_uniform_(tensor, a=math.sqrt(5))
    if not isinstance(of, torch.Tensor):
        raise TypeError(f"its argument names the parameter whose fan-in bounds it, such as uniform_fan_in(weight); "
                        f"got {show_value(of)}")
    fan_in, _ = init._calculate_fan_in_and_fan_out(of)
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
    return init.uniform_(tensor, -bound, bound)


INITIALISERS: dict[str, Callable[..., torch.Tensor]] = {
    "uniform_fan_in": uniform_fan_in,
    "uniform": init.uniform_,
    "normal": init.normal_,
    "trunc_normal": init.trunc_normal_,
    "constant": init.constant_,
    "ones": init.ones_,
    "zeros": init.zeros_,
    "eye": init.eye_,
    "orthogonal": init.orthogonal_,
    "xavier_uniform": init.xavier_uniform_,
    "xavier_normal": init.xavier_normal_,
    "kaiming_uniform": init.kaiming_uniform_,
    "kaiming_normal": init.kaiming_normal_,
}


def default_initialiser(param: torch.Tensor) -> Call:
    return Call("uniform_fan_in" if param.dim() >= 2 else "zeros", (), (), 0, 0)


def params_entry(spec: Spec, name: str) -> dict[str, Any]:
    """Where the spec's ``params`` lists ``name`` (path, line, column, source): where its errors point."""
    key = name if ("params", name) in spec.meta.positions else spec.meta.params.index(name)
    line, column = spec.meta.where("params", key)
    return dict(path=spec.path, line=line, column=column, source=spec.source)


@torch.no_grad()
def initialise(spec: Spec, params: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
    """Fill ``params`` in place, in order, as ``spec``'s ``params`` declares; ``values``: the attrs and dims the
    initialisers' arguments may read."""
    for name, param in params.items():
        call = spec.meta.param_init.get(name) or default_initialiser(param)
        where = dict(path=spec.path, source=spec.source, line=call.line, column=call.column) if call.line else \
            params_entry(spec, name)
        function = INITIALISERS.get(call.name)
        if function is None:
            raise SpecError(f"params.{name}: unknown initialiser {call.name!r}{suggest(call.name, INITIALISERS)} "
                            f"(known: {', '.join(INITIALISERS)})", **where)
        env = {**values, **params}
        try:
            args = [_argument(evaluate(arg, env)) for arg in call.args]
            kwargs = {key: _argument(evaluate(arg, env)) for key, arg in call.kwargs}
        except SpecError as error:
            raise SpecError(f"params.{name}: {error.message}", **where) from None
        try:
            function(param, *args, **kwargs)
        except Exception as error:  # one of torch.nn.init's functions: what it refuses is a bad spec
            raise SpecError(f"params.{name}: {call.name} cannot initialise a parameter of shape "
                            f"{tuple(param.shape)} with these arguments: {error}", **where) from None


def _argument(value: Any) -> Any:
    """An initialiser's argument: a finite number (an infinite bound or deviation fills a parameter with inf or
    nan), or what else the spec can name (a string, a bool, another parameter)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"an initialiser's arguments are finite numbers, got {value}")
    return value
