import pytest

from cbir.core.registry import Registry


def test_registered_factories_build_by_name_in_registration_order():
    shapes = Registry("shape")

    @shapes.register("square")
    def square(side: float = 1.0) -> float:
        return side * side

    @shapes.register("circle")
    class Circle:
        def __init__(self, radius: float = 1.0):
            self.radius = radius

    assert shapes.create("square", side=3.0) == 9.0
    assert shapes.create("circle", radius=2.0).radius == 2.0
    assert shapes.names() == ("square", "circle")
    assert "circle" in shapes and "triangle" not in shapes
    assert list(shapes) == ["square", "circle"]


def test_unknown_name_lists_the_known_ones():
    shapes = Registry("shape")
    shapes.register("square")(lambda: 1)
    with pytest.raises(ValueError, match=r"unknown shape 'sqare': choose one of square"):
        shapes.create("sqare")


def test_a_name_registers_once():
    shapes = Registry("shape")
    shapes.register("square")(lambda: 1)
    with pytest.raises(ValueError, match="registered twice"):
        shapes.register("square")(lambda: 2)


def test_build_passes_only_the_settings_a_member_takes():
    poolings = Registry("pooling")
    poolings.register("mean")(lambda: "mean")
    poolings.register("power")(lambda p=3.0: f"power {p}")
    assert poolings.build("mean", p=4.0, levels=2) == "mean"
    assert poolings.build("power", p=4.0, levels=2) == "power 4.0"
    assert poolings.build("power", p=None) == "power 3.0"


def test_a_family_raises_its_own_error_for_unknown_names():
    class ShapeError(ValueError):
        pass

    shapes = Registry("shape", error=ShapeError)
    with pytest.raises(ShapeError, match="unknown shape 'cube'"):
        shapes.create("cube")
