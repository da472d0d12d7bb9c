"""Quantities are parsed exactly and printed back in Kubernetes' canonical form."""

from fractions import Fraction

import pytest

from hacluster.model.quantity import QuantityError, cpu_millis, memory_bytes, parse_quantity


@pytest.mark.parametrize("text,value,canonical", [
    ("250m", Fraction(1, 4), "250m"),
    ("0.5", Fraction(1, 2), "500m"),
    ("512Mi", 512 * 2**20, "512Mi"),
    ("1Gi", 2**30, "1Gi"),
    ("1.5Gi", 3 * 2**29, "1536Mi"),
    ("2", 2, "2"),
    ("1e3", 1000, "1k"),
    ("1000", 1000, "1k"),
    ("100n", Fraction(1, 10**7), "100n"),
    (".5", Fraction(1, 2), "500m"),
    (3, 3, "3"),
    (0.25, Fraction(1, 4), "250m"),
])
def test_parse_and_canonical(text, value, canonical):
    q = parse_quantity(text)
    assert q.value == value
    assert q.canonical() == canonical


def test_exact_arithmetic():
    assert parse_quantity("0.1").value + parse_quantity("0.2").value == parse_quantity("0.3").value


def test_rounding_up_like_kubernetes():
    assert cpu_millis("0.0001") == 1
    assert cpu_millis("1") == 1000
    assert memory_bytes("1.5") == 2
    assert memory_bytes("1Ki") == 1024


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "1Zi", "1ee", "Mi", "--1", True, None, [1]])
def test_rejects_non_quantities(bad):
    with pytest.raises(QuantityError) as exc:
        parse_quantity(bad)
    assert "quantities must match the regular expression" in str(exc.value)
