"""Read-only stored objects: `freeze(value)` turns the JSON-like dicts and lists the state machine stores
into `FrozenDict` / `FrozenList`, which refuse every in-place change.

Used by `hacluster.store.state` on everything it stores or hands out (objects, watch events, results).
Readers on the event loop get the stored objects themselves — no copy per read — so a caller that changed
one in place (a shallow `dict(current)` followed by defaulting of a nested dict, say) would change this
master's replicated state without any command, and only this master's. Freezing makes such a change
raise `TypeError` at the line that attempts it instead. To derive a changed object, copy first:
`copy.deepcopy(obj)` (and `hacluster.store.state.deep_copy`) returns plain, mutable dicts and lists;
`dict(obj)` / `list(obj)` give a plain top level whose nested values stay frozen.

They are subclasses of dict and list, so `isinstance` checks, `==`, JSON and msgpack encoding and
iteration behave as for the plain types.
"""

from __future__ import annotations

import copy
from typing import Any, NoReturn

_WHY = ("stored objects are read-only (a change outside the Raft log would make this master diverge): "
        "copy.deepcopy the object and change the copy")


def _refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(_WHY)


class FrozenDict(dict[str, Any]):
    """A dict that refuses changes; `copy.deepcopy` of it is a plain dict."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _refuse
    setdefault = pop = popitem = clear = update = _refuse

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v, memo) for k, v in self.items()}

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


class FrozenList(list[Any]):
    """A list that refuses changes; `copy.deepcopy` of it is a plain list."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return [copy.deepcopy(v, memo) for v in self]

    def __copy__(self) -> list[Any]:
        return list(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))


_SCALARS = frozenset({str, int, float, bool, type(None)})
_LEAVES = _SCALARS | {FrozenDict, FrozenList}  # kept as they are: scalars, and parts already frozen
_dict_setitem = dict.__setitem__


def freeze(value: Any) -> Any:
    """`value` with every dict and list in it (recursively) read-only; already frozen parts are shared.
    Runs on the Raft thread for every stored object on every master, hence the fast paths: a dict is copied
    whole at C speed and only its nested containers are replaced (a third cheaper than rebuilding it)."""
    kind = type(value)
    if kind is dict:
        frozen = FrozenDict(value)
        for k, v in value.items():
            if type(v) not in _LEAVES:
                _dict_setitem(frozen, k, freeze(v))
        return frozen
    if kind is list or kind is tuple:
        return FrozenList([v if type(v) in _LEAVES else freeze(v) for v in value])
    if kind is FrozenDict or kind is FrozenList:
        return value
    if isinstance(value, dict):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return FrozenList([freeze(v) for v in value])
    return value
