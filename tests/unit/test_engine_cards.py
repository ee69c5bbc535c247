"""The engine cards are the one place that names the engines: nothing else lists them, nothing
else special-cases one of them, and every table is derived from the cards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from backend import PROJECT_ROOT
from stclient import registry
from stclient.card import STYLE_BUILTIN, STYLE_IMAGES

SCANNED = [PROJECT_ROOT / "backend", PROJECT_ROOT / "stclient", PROJECT_ROOT / "plugin",
           PROJECT_ROOT / "install.py"]


def _modules() -> list[Path]:
    files: list[Path] = []
    for root in SCANNED:
        files += [root] if root.is_file() else sorted(root.rglob("*.py"))
    return [f for f in files if "vendor" not in f.parts]


def _own_module(path: Path, engine: str) -> bool:
    """An engine's own modules may name it: its card, its engine, network and training files."""
    stem = path.stem
    return stem == engine or stem.startswith(engine + "_")


def _engine_literals(node: ast.AST, engines: set[str]) -> list[str]:
    return [n.value for n in ast.walk(node)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in engines]


def _violations(path: Path, engines: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            names = [e.value for e in node.elts
                     if isinstance(e, ast.Constant) and e.value in engines]
            if len(set(names)) >= 2:
                found.append(f"{path.name}:{node.lineno} lists engines {names}")
        elif isinstance(node, ast.Dict):
            names = [k.value for k in node.keys
                     if isinstance(k, ast.Constant) and k.value in engines]
            if len(set(names)) >= 2:
                found.append(f"{path.name}:{node.lineno} has a per-engine table {names}")
        elif isinstance(node, ast.Compare):
            for name in _engine_literals(node, engines):
                if not _own_module(path, name):
                    found.append(f"{path.name}:{node.lineno} special-cases {name!r}")
    return found


def test_no_module_outside_the_cards_spells_the_engine_list():
    engines = set(registry.engine_names())
    problems = [problem for path in _modules() for problem in _violations(path, engines)]
    assert not problems, "\n".join(problems)


def test_the_checker_finds_what_it_looks_for(tmp_path):
    """The scan above can fail: each pattern it forbids is caught in a sample module."""
    engines = set(registry.engine_names())
    first, second = sorted(engines)[:2]
    sample = tmp_path / "shared.py"
    sample.write_text(f"ENGINES = ({first!r}, {second!r})\n"
                      f"TABLE = {{{first!r}: 1, {second!r}: 2}}\n"
                      f"def f(engine):\n    return engine == {first!r}\n")
    assert len(_violations(sample, engines)) == 3
    own = tmp_path / f"{first}.py"
    own.write_text(f"def f(engine):\n    return engine == {first!r}\n")
    assert _violations(own, engines) == []


def test_cards_are_complete_and_consistent():
    cards = registry.cards()
    assert list(cards) == sorted(cards, key=lambda name: (cards[name].order, name))
    for name, card in cards.items():
        assert card.name == name and card.title and card.menu_label.endswith("...")
        # an engine without roles uses no model: it has none to default to or to choose
        assert all(role.archs for role in card.roles)
        assert card.takes_model or not (card.default_model or card.models_from
                                        or "model" in card.gimp_arguments), name
        options = {spec.name for spec in card.options}
        assert len(options) == len(card.options), f"{name}: an option is listed twice"
        for argument in card.gimp_arguments:   # every GIMP argument is an option or an input
            assert argument == "model" or argument.replace("-", "_") in options or (
                card.styles.kind in (STYLE_IMAGES, STYLE_BUILTIN)
                and argument.startswith(("style", "use-"))), (name, argument)
        for spec in card.options:
            spec.validate(spec.default)        # defaults are inside their own ranges
        if card.sample is not None:
            assert card.option("seed") is not None


def test_input_rules_come_from_the_card():
    for name, card in registry.cards().items():
        if card.styles.takes_images:
            with pytest.raises(Exception, match="at least"):
                registry.check_inputs(name, 0, False)
            registry.check_inputs(name, card.styles.minimum, False)
        else:
            with pytest.raises(Exception, match="no style"):
                registry.check_inputs(name, 1, False)
            registry.check_inputs(name, 0, False)
        if not card.styles.mask:
            with pytest.raises(Exception, match="no mask"):
                registry.check_inputs(name, card.styles.minimum, True)
