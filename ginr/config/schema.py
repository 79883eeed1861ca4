"""The config schema, in one place: every key a run reads, its type and its range.

Sections the engine reads are dataclasses here. A node with a ``_target_`` (encoder, decoder, its
block, the dataset, the optimizer) is checked against the signature of the constructor it names, which
stays the authority on its own arguments: an unknown or renamed key fails, and values are checked
against the constructor's type hints, with the ranges of :mod:`ginr.constraints`.

Every failure is a :class:`ConfigError` of one line naming the key, the value and what is allowed.
"""

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from ginr.constraints import Count, Fraction, Positive, PositiveFloat


class ConfigError(ValueError):
    """A bad config value; the message is one line naming the key, the value and what is allowed."""


class Target:
    """A node built by ``hydra.utils.instantiate``: its keys are its ``_target_``'s arguments."""


@dataclasses.dataclass
class PathsSection:
    data_dir: str
    output_dir: str


@dataclasses.dataclass
class DataSection:
    dataset: Target
    resolution: Positive
    channels: Positive
    batch_size: Positive
    num_workers: Count
    eval_resolutions: list[Positive]


@dataclasses.dataclass
class OptimSection:
    optimizer: Target
    warmup_steps: Count
    min_lr_ratio: Fraction
    grad_clip: PositiveFloat


# Under trainer.train_minutes, the mean time of these steps fixes the run's length: after compilation,
# inside the warm-up (whose schedule does not depend on the length). Where the warm-up lasts longer, the
# steps from there to RETIMED_UNTIL (or the warm-up's end) fix it again (ginr.engine.budget).
TIMED_STEPS = (10, 60)
RETIMED_UNTIL = 260


@dataclasses.dataclass
class TrainerSection:
    max_steps: Positive
    train_minutes: PositiveFloat | None
    device: Literal["auto", "cuda", "cpu"]
    precision: Literal["auto", "bf16", "fp16", "fp32"]
    compile: bool
    compile_mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"]
    queries_per_image: Positive | None
    query_sampling: Literal["per_image", "per_batch"]
    eval_every: Positive
    eval_max_images: Positive | None
    test_max_images: Positive | None
    eval_precision: Literal["fp32", "train"]
    select_on: str
    log_every: Positive
    ckpt_every: Positive
    ckpt_every_min: PositiveFloat | None
    render_chunk: Positive
    checkpoint_queries: Positive | None
    time_limit_min: PositiveFloat | None
    resume: str | None
    deterministic: bool
    max_bad_steps: Positive


@dataclasses.dataclass
class TargetsSection:
    resolution: Positive | list[Positive] | None
    queries: Count
    scales: Literal["fixed", "continuous"]


def target_resolutions(targets: DictConfig) -> list[int]:
    """``targets.resolution`` as a list: none for native targets, else the resolutions (one or several)
    whose pixels supervise the model beside its input's."""
    value = targets.resolution
    return [] if value is None else [value] if isinstance(value, int) else list(value)


@dataclasses.dataclass
class LoggerSection:
    images: Count
    progress: bool


@dataclasses.dataclass
class RunSection:
    name: str
    run_dir: str
    seed: Count
    paths: PathsSection
    data: DataSection
    encoder: Target
    decoder: Target
    optim: OptimSection
    trainer: TrainerSection
    targets: TargetsSection
    logger: LoggerSection


def check(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` on the first unknown key or bad value of a composed run config."""
    _check_section(cfg, RunSection, "")


def fail(key: str, value: Any, allowed: str) -> typing.NoReturn:
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _unknown(key: str, where: str, known: Sequence[str]) -> typing.NoReturn:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"{key} is not a key of {where}{hint}; allowed: {', '.join(sorted(known))}")


def _check_section(node: Any, spec: type, path: str) -> None:
    if not isinstance(node, DictConfig):
        fail(
            path, node, f"expected a section with keys {', '.join(f.name for f in dataclasses.fields(spec))}"
        )
    hints = typing.get_type_hints(spec, include_extras=True)
    for key in node:
        if key not in hints:
            _unknown(_join(path, key), path or "the config", list(hints))
    for key, hint in hints.items():
        if key not in node:
            raise ConfigError(f"{_join(path, key)} is missing: expected {describe(hint)}")
        _check_value(node[key], hint, _join(path, key))


def _check_target(node: Any, path: str) -> None:
    if not isinstance(node, DictConfig) or "_target_" not in node:
        fail(path, node, "expected a section with a _target_ to instantiate")
    try:
        target = get_object(node._target_)
    except Exception as err:
        fail(f"{path}._target_", node._target_, f"expected an importable class or function ({err})")
    named, hints, open_ended = arguments(target)
    for key in node:
        if key.startswith("_"):  # _target_, _partial_, _recursive_, _convert_, _args_
            continue
        if key not in named and not open_ended:
            _unknown(_join(path, key), getattr(target, "__name__", str(target)), named)
        value = node[key]
        if isinstance(value, DictConfig) and "_target_" in value:
            _check_target(value, _join(path, key))
        elif key in hints:
            _check_value(value, hints[key], _join(path, key))


def arguments(target: Callable[..., Any]) -> tuple[list[str], dict[str, Any], bool]:
    """What a config section for ``target`` may set: (its keyword names, their type hints where known,
    whether it takes any other key). ``**kwargs: Unpack[SomeTypedDict]`` names the TypedDict's keys; a bare
    ``**kwargs`` takes anything."""
    params = inspect.signature(target).parameters
    try:
        hints = typing.get_type_hints(
            target.__init__ if inspect.isclass(target) else target, include_extras=True
        )
    except Exception:  # unresolvable annotations (a third-party class): check the keys only
        hints = {}
    named = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    rest = next((n for n, p in params.items() if p.kind is p.VAR_KEYWORD), None)
    unpacked = _unpacked(hints.pop(rest, None))
    return [*named, *unpacked], hints | unpacked, rest is not None and not unpacked


def _unpacked(hint: Any) -> dict[str, Any]:
    """The keys and types of ``**kwargs: Unpack[SomeTypedDict]``; none for any other ``**kwargs``."""
    if typing.get_origin(hint) is not typing.Unpack:
        return {}
    return typing.get_type_hints(typing.get_args(hint)[0], include_extras=True)


def _check_value(value: Any, hint: Any, key: str) -> None:
    if hint is Target:
        _check_target(value, key)
    elif dataclasses.is_dataclass(hint):
        _check_section(value, hint, key)
    elif not _allows(value, hint):
        fail(key, value, f"expected {describe(hint)}")


def _allows(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint``; a hint this schema does not model allows anything."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _allows(value, args[0]) and all(c.allows(value) for c in args[1:] if hasattr(c, "allows"))
    if origin in (typing.Union, types.UnionType):
        return any(_allows(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence) or hint in (list, tuple, Sequence):
        if not isinstance(value, ListConfig | list | tuple):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_allows(v, a) for v, a in zip(value, args, strict=True))
        return not args or all(_allows(v, args[0]) for v in value)
    if origin in (dict, Mapping):
        return isinstance(value, DictConfig | dict)
    if hint is Any or origin is Callable or hint is Callable:
        return True
    return True


def describe(hint: Any) -> str:
    """What ``hint`` allows, in words: 'an integer >= 1', 'one of auto, cpu', 'null or a number > 0'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        bounds = " and ".join(c.describe() for c in args[1:] if hasattr(c, "describe"))
        return f"{describe(args[0])} {bounds}".strip()
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in args if a is not type(None)]
        text = " or ".join(describe(a) for a in arms)
        return f"null or {text}" if len(arms) < len(args) else text
    if origin is Literal:
        return f"one of {', '.join(map(str, args))}"
    if origin in (list, tuple, Sequence):
        return f"a list of items each {describe(args[0])}" if args else "a list"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))
