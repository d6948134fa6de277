"""The budget grammar: latency/params/macs/memory limits, their units, errors and feasibility."""

from __future__ import annotations

import pytest

from nas.cost.budget import KEYS, Budget, Constraint, parse_constraint
from nas.errors import BudgetError, NASError


@pytest.mark.parametrize(
    "text, key, limit",
    [
        ("latency:5ms", "latency", 5.0),
        ("latency:800us", "latency", 0.8),
        ("latency:1.5s", "latency", 1500.0),
        ("latency:<5ms", "latency", 5.0),
        ("latency:<=5ms", "latency", 5.0),
        ("latency: < 5 ms", "latency", 5.0),
        ("params:5M", "params", 5e6),
        ("params:600K", "params", 6e5),
        ("params:1.2G", "params", 1.2e9),
        ("params:300000", "params", 3e5),
        ("macs:600M", "macs", 6e8),
        ("macs:4.5G", "macs", 4.5e9),
        ("macs:<=100K", "macs", 1e5),
        ("memory:20MB", "memory", 2e7),
        ("memory:512B", "memory", 512.0),
        ("memory:64KB", "memory", 6.4e4),
        ("memory:1GB", "memory", 1e9),
        ("memory:16KiB", "memory", 16 * 1024.0),
        ("memory:20MiB", "memory", 20 * 1024.0**2),
        ("memory:1GiB", "memory", 1024.0**3),
        ("LATENCY:5ms", "latency", 5.0),
    ],
)
def test_each_unit(text, key, limit):
    b = Budget.parse(text)
    assert b.keys == (key,)
    c = b.get(key)
    assert c.limit == pytest.approx(limit)
    assert c.text == text.strip()
    assert parse_constraint(text).limit == pytest.approx(limit)


def test_combined_comma_separated_and_list_forms_agree():
    a = Budget.parse("latency:5ms,params:5M, macs:600M , memory:20MB")
    b = Budget.parse(["latency:5ms", "params:5M", "macs:600M,memory:20MB"])
    assert a == b
    assert a.keys == KEYS == ("latency", "params", "macs", "memory")
    assert len(a) == 4 and "macs" in a and "flops" not in a
    assert a.limits() == {"latency": 5.0, "params": 5e6, "macs": 6e8, "memory": 2e7}


def test_keys_kept_in_canonical_order_and_str():
    b = Budget.parse("params:5M,latency:5ms")
    assert b.keys == ("latency", "params")
    assert str(b) == "latency < 5 ms, params < 5.00 M"
    assert str(Budget.parse("macs:600M,memory:20MB")) == "macs < 600.00 M, memory < 20.00 MB"
    assert str(b.get("latency")) == "latency < 5 ms"
    assert str(Budget.parse("latency:800us")) == "latency < 0.8 ms"


def test_empty_budget_has_no_limits():
    for empty in ("", [], None, " , "):
        b = Budget.parse(empty)
        assert not b and b.keys == () and len(b) == 0
        assert b.feasible({}) is True
        assert b.violations({"latency": 99.0}) == {}
    assert b.get("latency") is None


def test_texts_round_trip():
    b = Budget.parse("memory:<=20MiB,latency:800us")
    assert Budget.parse(b.texts) == b
    assert Budget.parse(b) is b
    # a constraint built in code gets a canonical text that parses back to it
    c = Constraint("memory", 2e7)
    assert c.text == "memory:20000000B"
    assert parse_constraint(c.text) == c
    assert Budget.parse(Constraint("latency", 0.8).text).get("latency").limit == pytest.approx(0.8)


def test_violations_and_feasibility_follow_the_le_zero_convention():
    b = Budget.parse("latency:5ms,params:5M")
    v = b.violations({"latency": 4.0, "params": 6e6, "macs": 1e9})
    assert v == {"latency": pytest.approx(-0.2), "params": pytest.approx(0.2)}  # relative: (value - limit) / limit
    assert not b.feasible({"latency": 4.0, "params": 6e6})
    assert b.feasible({"latency": 4.0, "params": 4e6})
    # exactly at the limit is feasible (violation 0)
    assert b.feasible({"latency": 5.0, "params": 5e6})
    c = b.get("latency")
    assert c.violation(5.0) == 0.0 and c.violation(7.5) == pytest.approx(0.5)
    assert b.total_violation({"latency": 7.5, "params": 4e6}) == pytest.approx(0.5)


def test_missing_value_for_a_limited_key_is_an_error():
    b = Budget.parse("latency:5ms,memory:20MB")
    with pytest.raises(BudgetError, match="no memory value"):
        b.violations({"latency": 1.0})


@pytest.mark.parametrize(
    "texts, message",
    [
        ("flops:3G", "budget 'flops:3G': unknown key 'flops'; choose from latency, params, macs, memory"),
        ("latency:5MB", "budget 'latency:5MB': latency takes a time (us, ms, s), e.g. latency:5ms"),
        ("latency:5", "budget 'latency:5': latency takes a time (us, ms, s), e.g. latency:5ms"),
        ("latency:fast", "budget 'latency:fast': latency takes a time (us, ms, s), e.g. latency:5ms"),
        ("params:5ms", "budget 'params:5ms': params takes a count (K, M, G or none), e.g. params:5M"),
        ("macs:6X", "budget 'macs:6X': macs takes a count (K, M, G or none), e.g. macs:600M"),
        (
            "memory:20M",
            "budget 'memory:20M': memory takes a size (B, KB, MB, GB, KiB, MiB, GiB), e.g. memory:20MB",
        ),
        ("latency:", "budget 'latency:': missing value; latency takes a time (us, ms, s), e.g. latency:5ms"),
        ("latency:<", "budget 'latency:<': missing value"),
        ("5ms", "budget '5ms': expected key:value, e.g. latency:5ms"),
        ("latency 5ms", "budget 'latency 5ms': expected key:value"),
        ("latency:-5ms", "budget 'latency:-5ms': the limit must be positive, e.g. latency:5ms"),
        ("params:0", "budget 'params:0': the limit must be positive, e.g. params:5M"),
        ("latency:inf ms", "budget 'latency:inf ms': latency takes a time"),
        (
            "latency:5ms,params:5M,latency:3ms",
            "budget 'latency:3ms': latency is already limited by 'latency:5ms'; give each key at most once",
        ),
        (["params:5M", "Params:6M"], "budget 'Params:6M': params is already limited by 'params:5M'"),
        (["latency:5ms", 5], "budget 5: expected a string"),
    ],
)
def test_bad_inputs_name_the_piece_and_what_is_allowed(texts, message):
    with pytest.raises(BudgetError) as info:
        Budget.parse(texts)
    text = str(info.value)
    assert text.startswith(message)
    assert "\n" not in text
    assert isinstance(info.value, NASError)


def test_constraint_validates_key_and_limit():
    with pytest.raises(BudgetError, match="choose from latency, params, macs, memory"):
        Constraint("flops", 1.0)
    with pytest.raises(BudgetError, match="positive"):
        Constraint("latency", 0.0)
    with pytest.raises(BudgetError, match="positive"):
        Constraint("latency", float("nan"))
    with pytest.raises(BudgetError, match="already limited"):
        Budget([Constraint("params", 1e6), Constraint("params", 2e6)])


def test_a_latency_budget_takes_a_statistic():
    """``latency:5ms`` limits the median of timings; ``latency@p90:5ms`` their 90th percentile; other keys, other
    statistics and a stat on a count are refused with the allowed forms."""
    med, p90 = Budget.parse("latency:5ms").get("latency"), Budget.parse("latency@p90:5ms").get("latency")
    assert (med.stat, p90.stat, p90.limit) == ("p50", "p90", 5.0)
    assert Budget.parse(Budget.parse("latency@p90:5ms").texts) == Budget.parse("latency@p90:5ms")
    assert Budget.parse("latency@p90:5ms") != Budget.parse("latency:5ms")
    assert Budget.parse(Constraint("latency", 5.0, stat="p90").text).get("latency").stat == "p90"
    assert "p90" in str(Budget.parse("latency@p90:5ms"))
    for bad in ("latency@p99:5ms", "params@p90:5M"):
        with pytest.raises(BudgetError, match=r"latency@p90:5ms"):
            Budget.parse(bad)
