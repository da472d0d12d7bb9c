"""Kubernetes resource quantities ("250m", "0.5", "512Mi", "1Gi", "2", "1e3"), parsed exactly.

Used by validation (requests <= limits), by the scheduler (what fits on a node) and by the kubelet
runtimes (memory limits). Values are held as `fractions.Fraction`, so "0.1" + "0.2" is exactly "0.3"
and nothing is lost to floating point, as with Kubernetes' own `resource.Quantity`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

# The same expression Kubernetes reports in its error message.
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)
_NUMBER_RE = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}

QUANTITY_ERROR = f"quantities must match the regular expression '{QUANTITY_PATTERN}'"


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity; the message is Kubernetes' own."""

    def __init__(self, text: str) -> None:
        super().__init__(QUANTITY_ERROR)
        self.text = text


@dataclass(frozen=True, slots=True)
class Quantity:
    """An exact quantity and the notation it was written in ("binary", "decimal" or "exponent")."""

    value: Fraction
    notation: str

    def millis(self) -> int:
        """The value in thousandths, rounded up (how Kubernetes counts CPU: 0.0001 -> 1m)."""
        return math.ceil(self.value * 1000)

    def units(self) -> int:
        """The value as a whole number, rounded up (how Kubernetes counts bytes and pods)."""
        return math.ceil(self.value)

    def canonical(self) -> str:
        """The form Kubernetes prints back: "0.5" -> "500m", "1024Mi" -> "1Gi", "1000" -> "1k"."""
        return format_quantity(self.value, self.notation)


def parse_quantity(text: object) -> Quantity:
    """Parse a quantity given as a string or a JSON number; raise QuantityError if it is not one."""
    if isinstance(text, bool):
        raise QuantityError(str(text))
    if isinstance(text, int):
        return Quantity(Fraction(text), "decimal")
    if isinstance(text, float):
        if not math.isfinite(text):
            raise QuantityError(str(text))
        return Quantity(Fraction(repr(text)), "decimal")
    if not isinstance(text, str):
        raise QuantityError(repr(text))
    s = text.strip()
    m = _QUANTITY_RE.match(s)
    if not m:
        raise QuantityError(text)
    number, suffix = m.group(1), m.group(2)
    if not _NUMBER_RE.match(number):
        raise QuantityError(text)
    value = Fraction(number)
    if suffix in _BINARY:
        return Quantity(value * _BINARY[suffix], "binary")
    if suffix in _DECIMAL:
        return Quantity(value * _DECIMAL[suffix], "decimal")
    if suffix[:1] in ("e", "E"):
        exp = suffix[1:]
        if not re.fullmatch(r"[-+]?[0-9]+", exp):
            raise QuantityError(text)
        e = int(exp)
        return Quantity(value * (Fraction(10) ** e), "exponent")
    raise QuantityError(text)


def format_quantity(value: Fraction, notation: str = "decimal") -> str:
    """Format an exact value the way Kubernetes' canonical serialisation does (to the nearest nano)."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    v = abs(value)
    if notation == "binary" and v.denominator == 1 and v >= 1024:
        n = int(v)
        for suffix, factor in reversed(list(_BINARY.items())):
            if n % factor == 0:
                return f"{sign}{n // factor}{suffix}"
        return f"{sign}{n}"
    # Decimal SI: the largest suffix that leaves an integer, as Kubernetes prints "500m" or "1500m".
    nanos = math.ceil(v * 10**9)
    for suffix, exp in (("E", 18), ("P", 15), ("T", 12), ("G", 9), ("M", 6), ("k", 3), ("", 0),
                        ("m", -3), ("u", -6), ("n", -9)):
        unit = 10 ** (exp + 9)
        if nanos % unit == 0:
            return f"{sign}{nanos // unit}{suffix}"
    return f"{sign}{nanos}n"


def cpu_millis(text: object) -> int:
    """CPU quantity as millicores, rounded up."""
    return parse_quantity(text).millis()


def memory_bytes(text: object) -> int:
    """Memory (or any countable) quantity as a whole number, rounded up."""
    return parse_quantity(text).units()
