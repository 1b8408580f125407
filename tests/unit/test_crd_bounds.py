"""Every numeric bound of the BookGenQueue schema refuses a value just outside it and admits the value at
it: in the local validator (schema and CEL, tests/support/crd_validation.py) and in parse_queue. The cases
come from tests/support/crd_bounds.py; tests/cluster/test_crd_bounds.py sends the same bodies to a real
API server (issue 24, acceptance 4)."""

from __future__ import annotations

import re

import pytest
from bookgen_operator.core.spec import SpecError, parse_queue

from tests.support.crd_bounds import COMPANIONS, UNREACHABLE, BoundCase, bounds, cases, show
from tests.support.crd_validation import CRD_PATH, cel_messages, defaulted, openapi_schema, validate_object

CASES = cases()


def test_there_is_one_case_per_bound_the_crd_states() -> None:
    """Counted in the CRD's text, independently of the walk: a bound the generator missed (in a new kind
    of node, say) makes the numbers differ, so the list cannot shrink unnoticed."""
    written = re.findall(r"^\s*(?:minimum|maximum):|[{,]\s*(?:minimum|maximum):", CRD_PATH.read_text(), re.MULTILINE)
    assert len(bounds()) == len(written) == len(CASES)
    assert len(CASES) >= 70
    assert len({c.id for c in CASES}) == len(CASES)


def test_the_tables_name_real_bounds() -> None:
    paths = {b.path for b in bounds()}
    assert set(COMPANIONS) <= paths
    assert all(companion in paths for companions in COMPANIONS.values() for companion in companions)
    assert set(UNREACHABLE) <= {(b.path, b.side) for b in bounds()}


def refusal(messages: list[str], case: BoundCase) -> bool:
    """The body is refused because of this field (not only by a rule elsewhere)."""
    return any(m.startswith(f"{case.field}:") for m in messages)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_local_validator_refuses_just_outside_and_admits_at_the_bound(case: BoundCase) -> None:
    failures = [f"{case.field}={show(v)}: {validate_object(case.body(v)) or 'accepted'}"
                for v in case.outside if not refusal(validate_object(case.body(v)), case)]
    at_bound = validate_object(case.body(case.at_bound))
    if case.refused_at_bound_by:
        if not at_bound or refusal(at_bound, case) or not all(case.refused_at_bound_by in m for m in at_bound):
            failures.append(f"{case.field}={show(case.at_bound)}: {at_bound}")
    elif at_bound:
        failures.append(f"{case.field}={show(case.at_bound)}: {at_bound}")
    assert failures == []


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_parse_queue_refuses_just_outside_and_admits_at_the_bound(case: BoundCase) -> None:
    failures = []
    for value in case.outside:
        try:
            parse_queue(case.body(value))
            failures.append(f"{case.field}={show(value)} accepted")
        except SpecError as exc:
            if case.field not in str(exc):
                failures.append(f"{case.field}={show(value)}: {exc}")
    try:
        parse_queue(case.body(case.at_bound))
        if case.refused_at_bound_by:
            failures.append(f"{case.field}={show(case.at_bound)} accepted")
    except SpecError as exc:
        if not case.refused_at_bound_by or case.refused_at_bound_by not in str(exc):
            failures.append(f"{case.field}={show(case.at_bound)}: {exc}")
    assert failures == []


FRACTIONAL = [c for c in CASES if c.bound.type == "number" and not float(c.bound.limit).is_integer()]


def test_fractional_bounds_exist_to_be_checked() -> None:
    assert {c.bound.path for c in FRACTIONAL} >= {"spec.autoscaling.pollIntervalSeconds",
                                                  "spec.pools[].autoscaling.pollIntervalSeconds"}


@pytest.mark.parametrize("case", FRACTIONAL, ids=lambda c: c.id)
def test_a_whole_number_outside_a_fractional_bound_is_refused_by_a_cel_rule(case: BoundCase) -> None:
    """The API server compares a whole number with a fractional minimum or maximum truncated to an integer
    (kube-openapi's MinimumNativeType), so the schema alone lets 0 through `minimum: 0.1`: a rule on the
    field must refuse it. The local jsonschema check has no such gap, so CEL is checked alone here."""
    whole = [v for v in case.outside if isinstance(v, int)]
    assert whole
    schema = openapi_schema()
    for value in whole:
        messages = cel_messages(defaulted(case.body(value)), schema)
        assert refusal(messages, case), (value, messages)
