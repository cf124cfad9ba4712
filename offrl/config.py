"""Options declared once: a config dataclass's fields, with their types, defaults and docs.

A field's documentation is the string literal under it (as Sphinx reads it)::

    @dataclass
    class TrainConfig:
        steps: int = 20_000
        \"""Gradient updates.\"""

:func:`declared_options` and :func:`field_docs` read those literals; :func:`add_options` turns
the fields into ``argparse`` options (``eval_every`` -> ``--eval-every``, with the field's type,
default and docstring as help) and :func:`from_namespace` builds the dataclass back from the
parsed arguments. So the command line, ``help()`` and the docs all come from one declaration.

This module is the package's ground floor: it imports nothing from ``offrl``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar, get_args, get_origin

from offrl.errors import ConfigError

__all__ = [
    "declared_options",
    "field_docs",
    "help_text",
    "parse_bool",
    "add_options",
    "from_namespace",
]

T = TypeVar("T")


def declared_options(cls: type) -> dict[str, tuple[str, str]]:
    """``{field: (default, docstring)}`` for the fields that ``cls``'s own body declares.

    ``default`` is the default as written in the source (``""`` without one). A field's
    docstring is the string literal under it; Python keeps no trace of it at run time, so it is
    read from the class's source. Without the source (a class typed into a REPL) this returns
    nothing and the docs are simply not listed. ``ClassVar`` annotations are not fields.
    """
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    if not tree.body or not isinstance(tree.body[0], ast.ClassDef):
        return {}
    body = tree.body[0].body
    out = {}
    for node, after in zip(body, [*body[1:], None], strict=True):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if "ClassVar" in ast.unparse(node.annotation):
            continue
        doc = ""
        if (
            isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            doc = inspect.cleandoc(after.value.value)
        default = ast.unparse(node.value) if node.value is not None else ""
        out[node.target.id] = (default, doc)
    return out


def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` for every field of the dataclass ``cls``, in field order.

    Inherited fields take their base class's docstring unless a subclass redefines the field
    with a docstring of its own. A field without one maps to ``""``.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update({k: doc for k, (_, doc) in declared_options(klass).items() if doc})
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls)}


def help_text(doc: str) -> str:
    """A docstring as one line of ``argparse`` help: whitespace collapsed, reST markup
    (````literal````, ``:role:`target```) reduced to its text, ``%`` escaped (argparse
    %-formats help strings)."""
    text = re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", doc.replace("``", ""))
    return " ".join(text.split()).replace("%", "%%")


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected 0/1, got {text!r}")


def _resolved_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation naming something not importable here
        return {}


def _without_none(tp: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _split(convert: Callable[[str], Any], container: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return container(convert(x.strip()) for x in text.split(",") if x.strip())

    parse.__name__ = getattr(convert, "__name__", "value") + " list"  # argparse's error names it
    return parse


def _converter(tp: Any) -> tuple[Callable[[str], Any], list[Any] | None]:
    """A string-to-value function for the field type ``tp``, and its choices (``Literal``)."""
    if tp in (int, float, str):
        return tp, None
    if get_origin(tp) is Literal:
        choices = list(get_args(tp))
        return type(choices[0]), choices
    origin, args = get_origin(tp), get_args(tp)
    if origin in (list, tuple) and args and args[0] in (int, float, str):
        if origin is tuple and not (len(args) == 1 or (len(args) == 2 and args[1] is ...)):
            raise TypeError(f"no command-line form for {tp}")
        return _split(args[0], origin), None
    raise TypeError(f"no command-line form for {tp}")


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    skip: Iterable[str] = (),
    flags: Mapping[str, Sequence[str]] | None = None,
    required: Iterable[str] = (),
) -> dict[str, argparse.Action]:
    """Add one option per field of the dataclass ``cls`` to ``parser``; returns them by field.

    Each option's destination is the field's name, so :func:`from_namespace` finds it. The
    option is ``--field-name`` (``flags`` gives other spellings for a field: ``{"env_id":
    ["--env"]}``), its type and default are the field's, and its help is the field's docstring
    followed by the default. Field types map to:

    * ``int``, ``float``, ``str`` and ``X | None`` of them: one value (``None`` defaults stay
      ``None`` until given);
    * ``Literal[...]``: one of the listed values;
    * ``bool``: ``--flag`` (on), ``--flag 1|0`` (either), ``--no-flag`` (off);
    * ``list[X]`` and ``tuple[X, ...]``: comma-separated values (``--seeds 0,1,2``).

    A field without a default, or named in ``required``, is a required option. Fields of other
    types (dicts...) must be named in ``skip``; the caller then adds its own option for them and
    passes their value to :func:`from_namespace`.
    """
    skipped, forced = set(skip), set(required)
    flags = flags or {}
    hints = _resolved_types(cls)
    docs = field_docs(cls)
    added: dict[str, argparse.Action] = {}
    for f in dataclasses.fields(cls):
        if f.name in skipped:
            continue
        option_strings = list(flags.get(f.name, ["--" + f.name.replace("_", "-")]))
        metavar = option_strings[0].lstrip("-").replace("-", "_").upper()
        default = _default(f)
        must = default is dataclasses.MISSING or f.name in forced
        tp = _without_none(hints.get(f.name, type(default)))
        doc = help_text(docs.get(f.name, ""))
        if tp is bool:
            negative = "--no-" + option_strings[0].lstrip("-")
            shown = f" (default: on; {negative}: off)" if default else " (default: off)"
            added[f.name] = parser.add_argument(
                *option_strings,
                dest=f.name,
                nargs="?",
                const=True,
                type=parse_bool,
                default=None if must else default,
                required=must,
                metavar="0|1",
                help=doc + shown,
            )
            parser.add_argument(
                *("--no-" + s[2:] for s in option_strings if s.startswith("--")),
                dest=f.name,
                action="store_false",
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )
            continue
        try:
            convert, choices = _converter(tp)
        except TypeError:
            raise TypeError(
                f"{cls.__name__}.{f.name}: {tp} has no command-line form; skip it"
            ) from None
        shown = ""
        if not must and default is not None and default != "":
            shown = f" (default: {help_text(_shown(default))})"
        added[f.name] = parser.add_argument(
            *option_strings,
            dest=f.name,
            type=convert,
            choices=choices,
            default=None if must else default,
            required=must,
            metavar=None if choices else metavar,
            help=doc + shown,
        )
    return added


def from_namespace(cls: type[T], namespace: argparse.Namespace, **overrides: Any) -> T:
    """Build the dataclass ``cls`` from arguments parsed with :func:`add_options`.

    Each field takes ``overrides[name]`` if given, else the namespace's value of that name,
    else its default.
    """
    values = {}
    assert dataclasses.is_dataclass(cls)
    for f in dataclasses.fields(cls):
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif hasattr(namespace, f.name):
            values[f.name] = getattr(namespace, f.name)
    return cls(**values)


# ---------------------------------------------------------------------- validation
# (field-name pattern, low, high, low inclusive, high inclusive): the ranges every option of that
# name takes, in one place. A pattern is a name, ``*_suffix`` or ``prefix_*``; the first match
# wins. Sizes and learning rates must be positive; rates and fractions lie in the unit interval;
# ``*_every`` may be 0 (off) except where a loop divides by it.
RANGES: tuple[tuple[str, float, float, bool, bool], ...] = (
    ("target_update_every", 1, math.inf, True, False),
    ("eps_decay_updates", 1, math.inf, True, False),
    ("eps_start", 0.0, 1.0, True, True),
    ("eps_end", 0.0, 1.0, True, True),
    ("threshold", 0.0, 1.0, True, False),
    ("min_q_weight", 0.0, math.inf, True, False),
    ("kappa", 0.0, math.inf, False, False),
    ("log_every", 1, math.inf, True, False),
    ("checkpoint_every", 1, math.inf, True, False),
    ("recompute_every", 1, math.inf, True, False),
    ("model_epoch_steps", 1, math.inf, True, False),
    ("model_max_epochs", 1, math.inf, True, False),
    ("model_holdout", 0.0, 1.0, False, False),
    ("real_ratio", 0.0, 1.0, False, True),
    ("model_ensemble", 1, math.inf, True, False),
    ("model_elites", 1, math.inf, True, False),
    ("model_max_holdout", 1, math.inf, True, False),
    ("model_patience", 1, math.inf, True, False),
    ("model_retain_epochs", 1, math.inf, True, False),
    ("rollout_length", 1, math.inf, True, False),
    ("lr", 0.0, math.inf, False, False),
    ("*_lr", 0.0, math.inf, False, False),
    ("batch_size", 1, math.inf, True, False),
    ("hidden", 1, math.inf, True, False),
    ("*_hidden", 1, math.inf, True, False),
    ("num_*", 1, math.inf, True, False),
    ("n_*", 1, math.inf, True, False),
    ("*_freq", 1, math.inf, True, False),
    ("*_every", 0, math.inf, True, False),
    ("*_size", 1, math.inf, True, False),
    ("*_interval", 1, math.inf, True, False),
    ("max_steps", 1, math.inf, True, False),
    ("*_steps", 0, math.inf, True, False),
    ("steps", 1, math.inf, True, False),
    ("eval_episodes", 1, math.inf, True, False),
    ("threads", 1, math.inf, True, False),
    ("gamma", 0.0, 1.0, False, True),
    ("tau", 0.0, 1.0, False, True),
    ("expectile", 0.0, 1.0, False, False),
    ("dropout", 0.0, 1.0, True, False),
    ("frac", 0.0, 1.0, False, True),
    ("data_fraction", 0.0, 1.0, False, True),
    ("lam", 0.0, 1.0, True, True),
    ("lmbda", 0.0, 1.0, True, True),
    ("*_coef", 0.0, math.inf, True, False),
    ("*_sigma", 0.0, math.inf, False, False),
    ("policy_noise", 0.0, math.inf, True, False),
    ("noise_clip", 0.0, math.inf, True, False),
)


def _range_of(name: str) -> tuple[float, float, bool, bool] | None:
    for pattern, *bounds in RANGES:
        if (
            pattern == name
            or (pattern.startswith("*") and name.endswith(pattern[1:]))
            or (pattern.endswith("*") and name.startswith(pattern[:-1]))
        ):
            low, high, low_in, high_in = bounds
            return float(low), float(high), bool(low_in), bool(high_in)
    return None


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp).replace("typing.", "")
    )


def _type_ok(value: Any, tp: Any) -> bool | None:
    """Whether ``value`` fits the annotation ``tp``; ``None`` for annotations not checked."""
    if tp is Any:
        return None
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        results = [_type_ok(value, a) for a in args]
        return None if None in results and True not in results else any(results)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is Literal:
        return value in args
    if origin in (tuple, list) and args and (len(args) == 1 or args[-1] is ...):
        return isinstance(value, tuple | list) and all(_type_ok(v, args[0]) for v in value)
    return None


def check_options(obj: Any) -> None:
    """Check every field of the dataclass instance ``obj`` against its annotation (type) and
    :data:`RANGES` (by field name); raise :class:`~offrl.errors.ConfigError` naming the first
    bad one and what it takes."""
    cls = type(obj)
    hints = _resolved_types(cls)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        tp = hints.get(f.name)
        where = f"{cls.__name__}.{f.name}"
        if tp is not None and _type_ok(value, tp) is False:
            raise ConfigError(
                f"option {f.name}: expected {_type_name(_without_none(tp))}, got {value!r} "
                f"({where})"
            )
        bounds = _range_of(f.name)
        if bounds is None or value is None or isinstance(value, bool | str):
            continue
        low, high, low_in, high_in = bounds
        for v in value if isinstance(value, tuple | list) else (value,):
            if not isinstance(v, int | float):
                continue
            ok_low = v >= low if low_in else v > low
            ok_high = v <= high if high_in else v < high
            if not (ok_low and ok_high and not (isinstance(v, float) and math.isnan(v))):
                lo, hi = "[" if low_in else "(", "]" if high_in else ")"
                span = f"{lo}{low:g}, {high:g}{hi}" if high != math.inf else f"{lo}{low:g}, inf)"
                raise ConfigError(f"option {f.name}: {v!r} is outside {span} ({where})")
