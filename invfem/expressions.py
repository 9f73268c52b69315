"""Formulas from a config, parsed safely: ``"1 / (1 + x**2 + y**2) + 1"`` -> a torch function.

Only arithmetic (``+ - * / **``, with ``^`` read as ``**`` as in math, unary minus), numbers, the variables a formula is declared
with (``x``, ``y``, ``t``, ``u``), the constants ``pi`` and ``e`` and the functions in
:data:`FUNCTIONS` are accepted; anything else (attributes, subscripts, other names, calls
of other functions, keywords, lambdas...) is a :class:`~invfem.errors.ConfigError` naming
what was found. Nothing is ever passed to ``eval``: the syntax tree is checked node by
node and turned into a closure over torch operations.

>>> f = compile_expression("sin(pi * x) * y", ("x", "y"))
>>> float(f(x=torch.tensor(0.5), y=torch.tensor(2.0)))
2.0
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Callable

import torch

from invfem.errors import ConfigError

FUNCTIONS: dict[str, Callable] = {
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "exp": torch.exp, "log": torch.log,
    "sqrt": torch.sqrt, "tanh": torch.tanh, "sinh": torch.sinh, "cosh": torch.cosh, "abs": torch.abs,
    "atan": torch.atan, "atan2": torch.atan2, "min": torch.minimum, "max": torch.maximum,
}
CONSTANTS = {"pi": math.pi, "e": math.e}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def compile_expression(text, variables: tuple[str, ...]) -> Callable[..., torch.Tensor]:
    """A function of the keyword tensors ``variables`` from a formula (or a number).

    Numbers give constant functions (broadcast to the shape of the first variable).
    """
    if isinstance(text, bool) or not isinstance(text, (int, float, str)):
        raise ConfigError(f"expected a number or a formula in {', '.join(variables)}, got {text!r}")
    source = str(text)
    try:
        tree = ast.parse(source.replace("^", "**"), mode="eval")      # x^2 means x**2 (with its precedence)
    except SyntaxError as exc:
        raise ConfigError(f"formula {source!r} is not valid: {exc.msg}") from None
    build = _Builder(source, variables)
    evaluate = build.node(tree.body)

    def function(**values: torch.Tensor) -> torch.Tensor:
        missing = [v for v in variables if v not in values]
        if missing:
            raise ConfigError(f"formula {source!r} needs values for {missing}")
        out = evaluate(values)
        like = values[variables[0]] if variables else None
        if like is not None and (not torch.is_tensor(out) or out.shape != like.shape):
            out = torch.as_tensor(out, dtype=like.dtype, device=like.device) + torch.zeros_like(like)
        return out

    function.source = source
    return function


class _Builder:
    """Syntax-tree node -> closure ``values -> tensor``, refusing every construct not listed."""

    def __init__(self, source: str, variables: tuple[str, ...]):
        self.source, self.variables = source, variables

    def fail(self, what: str):
        allowed = ", ".join(self.variables) or "no variables"
        raise ConfigError(f"formula {self.source!r}: {what} is not allowed (use numbers, + - * / ** ^, "
                          f"{allowed}, pi, e and {', '.join(sorted(FUNCTIONS))})")

    def node(self, n):
        if isinstance(n, ast.Constant):
            if isinstance(n.value, bool) or not isinstance(n.value, (int, float)):
                self.fail(f"the constant {n.value!r}")
            value = float(n.value)
            return lambda values: value
        if isinstance(n, ast.Name):
            if n.id in self.variables:
                name = n.id
                return lambda values: values[name]
            if n.id in CONSTANTS:
                value = CONSTANTS[n.id]
                return lambda values: value
            self.fail(f"the name {n.id!r}")
        if isinstance(n, ast.BinOp) and type(n.op) in _BINARY:
            op, left, right = _BINARY[type(n.op)], self.node(n.left), self.node(n.right)
            return lambda values: op(left(values), right(values))
        if isinstance(n, ast.UnaryOp) and type(n.op) in _UNARY:
            op, operand = _UNARY[type(n.op)], self.node(n.operand)
            return lambda values: op(operand(values))
        if isinstance(n, ast.Call):
            if not isinstance(n.func, ast.Name) or n.func.id not in FUNCTIONS:
                self.fail(f"calling {ast.unparse(n.func)!r}")
            if n.keywords:
                self.fail("a keyword argument")
            fn, args = FUNCTIONS[n.func.id], [self.node(a) for a in n.args]
            return lambda values: fn(*[_tensor(a(values), values) for a in args])
        self.fail(f"{type(n).__name__} ({ast.unparse(n)!r})")


def _tensor(value, values: dict):
    """Numbers become tensors like the variables (torch functions want tensors)."""
    if torch.is_tensor(value):
        return value
    like = next(iter(values.values()), None)
    return torch.as_tensor(value, dtype=torch.float64, device=None if like is None else like.device)
