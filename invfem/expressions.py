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
#: the functions of two arguments (the others take one)
BINARY_FUNCTIONS = ("atan2", "min", "max")
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
    if isinstance(text, (int, float)) and not math.isfinite(text):
        raise ConfigError(f"expected a finite number or a formula in {', '.join(variables)}, got {text!r}")
    source = str(text)
    if len(source) > MAX_LENGTH:
        raise ConfigError(f"formula {source[:40]!r}... is {len(source)} characters long (at most {MAX_LENGTH})")
    try:
        tree = ast.parse(source.replace("^", "**"), mode="eval")      # x^2 means x**2 (with its precedence)
    except SyntaxError as exc:
        raise ConfigError(f"formula {source!r} is not valid: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ConfigError(f"formula {source[:40]!r}... is nested too deeply") from None
    depth = _depth(tree.body)
    if depth > MAX_DEPTH:
        raise ConfigError(f"formula {source[:40]!r}{'...' if len(source) > 40 else ''} nests {depth} operations deep "
                          f"(at most {MAX_DEPTH}; a long sum nests one level per term)")
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
    _try_once(function, source, variables)
    return function


#: what a formula may be: its characters and the depth of its syntax tree (deeper ones recurse past Python's limit)
MAX_LENGTH = 2000
MAX_DEPTH = 100


def _depth(node) -> int:
    """Depth of a syntax tree, without recursion."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        n, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(n))
    return deepest


def _try_once(function, source: str, variables: tuple[str, ...]) -> None:
    """Evaluate once at a few sample values, at check time: a formula that raises there (an
    error of torch on its arguments) is a ConfigError now, not a traceback later."""
    sample = {v: torch.linspace(0.1, 0.9, 5, dtype=torch.float64) for v in variables}
    try:
        values = function(**sample)
    except ConfigError:
        raise
    except (ArithmeticError, RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError(f"formula {source!r} cannot be evaluated: {exc}") from None
    if torch.is_tensor(values) and values.numel() and not bool(torch.isfinite(values).any()):
        at = ", ".join(f"{v} in [0.1, 0.9]" for v in variables) or "any value"
        raise ConfigError(f"formula {source!r} is not finite at {at} (it gives {float(values.reshape(-1)[0])})")


class _Builder:
    """Syntax-tree node -> closure ``values -> tensor``, refusing every construct not listed."""

    def __init__(self, source: str, variables: tuple[str, ...]):
        self.source, self.variables = source, variables

    def fail(self, what: str):
        allowed = ", ".join(self.variables) or "no variables"
        raise ConfigError(f"formula {self.source!r}: {what} is not allowed (use numbers, + - * / ** ^, "
                          f"{allowed}, pi, e and {', '.join(sorted(FUNCTIONS))})")

    def fail_value(self, part: str, why):
        raise ConfigError(f"formula {self.source!r}: {part} cannot be evaluated ({why})")

    def node(self, n):
        if isinstance(n, ast.Constant):
            if isinstance(n.value, bool) or not isinstance(n.value, (int, float)):
                self.fail(f"the constant {n.value!r}")
            if not math.isfinite(float(n.value)):
                self.fail_value(ast.unparse(n), "the number is too large")
            return _Constant(float(n.value))
        if isinstance(n, ast.Name):
            if n.id in self.variables:
                name = n.id
                return lambda values: values[name]
            if n.id in CONSTANTS:
                return _Constant(CONSTANTS[n.id])
            self.fail(f"the name {n.id!r}")
        if isinstance(n, ast.BinOp) and type(n.op) in _BINARY:
            op, left, right = _BINARY[type(n.op)], self.node(n.left), self.node(n.right)
            if isinstance(left, _Constant) and isinstance(right, _Constant):   # folded now: 1/0, 9**9**9 fail here
                try:
                    value = op(left.value, right.value)
                except (ArithmeticError, ValueError) as exc:
                    self.fail_value(ast.unparse(n), exc)
                if isinstance(value, complex) or not math.isfinite(value):
                    self.fail_value(ast.unparse(n), f"the result is {value}")
                return _Constant(float(value))
            return lambda values: op(left(values), right(values))
        if isinstance(n, ast.UnaryOp) and type(n.op) in _UNARY:
            op, operand = _UNARY[type(n.op)], self.node(n.operand)
            if isinstance(operand, _Constant):
                return _Constant(op(operand.value))
            return lambda values: op(operand(values))
        if isinstance(n, ast.Call):
            if not isinstance(n.func, ast.Name) or n.func.id not in FUNCTIONS:
                self.fail(f"calling {ast.unparse(n.func)!r}")
            if n.keywords:
                self.fail("a keyword argument")
            arity = 2 if n.func.id in BINARY_FUNCTIONS else 1
            if len(n.args) != arity:
                self.fail_value(ast.unparse(n), f"{n.func.id} takes {arity} argument{'s' if arity > 1 else ''}, "
                                                f"got {len(n.args)}")
            fn, args = FUNCTIONS[n.func.id], [self.node(a) for a in n.args]
            return lambda values: fn(*[_tensor(a(values), values) for a in args])
        self.fail(f"{type(n).__name__} ({ast.unparse(n)!r})")


class _Constant:
    """A constant subexpression: a closure that also shows its value, so that constant operations fold."""

    def __init__(self, value: float):
        self.value = value

    def __call__(self, values) -> float:
        return self.value


def _tensor(value, values: dict):
    """Numbers become tensors like the variables (torch functions want tensors)."""
    if torch.is_tensor(value):
        return value
    like = next(iter(values.values()), None)
    return torch.as_tensor(value, dtype=torch.float64, device=None if like is None else like.device)
