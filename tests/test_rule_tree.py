"""The rule tree's classes (timeline/language/ast.py): plain frozen classes that check and
convert what they are given as the pydantic models they replaced did."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ConfigDict, TypeAdapter, ValidationError

from timeline.language import ast
from timeline.language.durations import Duration


def const(value: Any) -> ast.Const:
    return ast.Const(nid=1, path="define", value=value)


def test_an_int_where_a_float_goes_is_that_float() -> None:
    value = const(3).value
    assert (value, type(value)) == (3.0, float)


def test_a_bool_where_a_float_or_a_bool_goes_stays_a_bool() -> None:
    assert const(True).value is True


def test_an_int_parameter_default_is_a_float() -> None:
    default = ast.ParamSpec(name="window", default=30).default
    assert (default, type(default)) == (30.0, float)


def test_a_list_where_a_tuple_goes_is_a_tuple_of_its_items_made() -> None:
    example = ast.Example(
        name="e", events=[{"kind": "fever"}], expect=[], params=[["upper", 5], ["drug", "x"]]
    )
    assert example.params == (("upper", 5.0), ("drug", "x"))
    assert isinstance(example.events, tuple)


def test_an_integral_float_where_an_int_goes_is_that_int() -> None:
    n = ast.AtLeast(nid=1, path="define", n=2.0, items=[const(True)]).n
    assert (n, type(n)) == (2, int)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ast.Type(kind="text"),
        lambda: const("3"),
        lambda: ast.Not(nid=1, path="define", item="not a node"),
        lambda: ast.AtLeast(nid=1, path="define", n=2.5, items=[]),
        lambda: ast.Selector(name="s", kinds="fever"),
    ],
    ids=["literal", "float", "node", "int", "tuple"],
)
def test_a_value_of_the_wrong_type_is_refused(make: Any) -> None:
    with pytest.raises(TypeError):
        make()


def test_a_missing_field_is_refused() -> None:
    with pytest.raises(TypeError, match="value is required"):
        ast.Const(nid=1, path="define")  # type: ignore[call-arg]


def test_an_unknown_field_is_refused() -> None:
    with pytest.raises(TypeError, match="no field colour"):
        ast.Const(nid=1, path="define", value=1.0, colour="red")  # type: ignore[call-arg]


def test_a_node_cannot_be_changed() -> None:
    node = const(1.0)
    with pytest.raises(AttributeError):
        node.value = 2.0  # type: ignore[misc]


def test_replace_sets_the_fields_given_as_they_are_and_keeps_the_others() -> None:
    spec = ast.ParamSpec(name="upper", default=5.0, unit="mg/L")
    changed = spec.replace(value=10)  # unconverted, as pydantic's model_copy left it
    assert (changed.value, type(changed.value), changed.unit, spec.value) == (10, int, "mg/L", None)


def test_nodes_of_equal_fields_are_equal_and_hash_alike() -> None:
    assert const(1.0) == const(1) and hash(const(1.0)) == hash(const(1))


def test_nodes_of_different_classes_are_not_equal() -> None:
    assert ast.Age(nid=1, path="define") != ast.TimeSince(
        nid=1, path="define", anchor=ast.Anchor(select=ast.Selector(name="birth", kinds=("birth",)))
    )


def test_repr_names_every_field_in_order() -> None:
    assert repr(const(3)) == "Const(nid=1, path='define', value=3.0, unit=None, written=None)"


def test_a_subclass_lists_its_base_fields_first() -> None:
    assert ast.Compare.field_names == ("nid", "path", "op", "left", "right")


def test_a_tree_comes_back_from_pickle_equal() -> None:
    tree = ast.Logic(
        nid=3, path="define", op="all",
        items=[const(1), ast.Not(nid=2, path="define.all[1]", item=const(False))],
    )  # fmt: skip
    assert pickle.loads(pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL)) == tree


def test_construct_fills_the_defaults_unchecked() -> None:
    sel = ast.Selector.construct(name="weight", kinds=("weight",))
    assert (sel.codes, sel.any_of, sel.dose_unit) == ((), (), None)


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False),
    st.text(max_size=3),
    st.builds(Duration, st.integers(-5, 5), st.sampled_from(["day", "month"])),
)


@pytest.mark.parametrize(
    ("cls", "field"),
    [
        (ast.Const, "value"),
        (ast.ParamSpec, "default"),
        (ast.ParamSpec, "value"),
        (ast.Expectation, "value"),
        (ast.Clip, "low"),
        (ast.AtLeast, "n"),
        (ast.Type, "unit"),
        (ast.WindowBound, "other"),
        (ast.Expectation, "where"),
        (ast.Example, "params"),
    ],
)
@given(
    value=st.one_of(values, st.lists(values, max_size=3), st.lists(st.tuples(st.text(max_size=2), values)))
)
def test_what_a_field_accepts_it_makes_as_pydantic_made_it(
    cls: type[ast.Frozen], field: str, value: Any
) -> None:
    """The tree is stricter than pydantic's lax mode (text is no number), never otherwise."""
    convert = cls._make_converters()[field]
    try:
        made = convert(value)
    except TypeError:
        return
    hint = eval(inspect.get_annotations(cls)[field], vars(ast))
    try:
        expected = TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True)).validate_python(value)
    except ValidationError:
        pytest.fail(f"{cls.__name__}.{field} accepted {value!r}, which pydantic refused")
    assert (made, shape(made)) == (expected, shape(expected))


def shape(value: Any) -> Any:
    """The types of a value and of the items of its tuples, nested."""
    return tuple(shape(v) for v in value) if isinstance(value, tuple) else type(value)
