"""The repository carries its own reference: every field the spec model accepts is in
docs/space-yaml.md, and no document sends a reader to files the repository does not have."""

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from hpt.spacefile.model import USER_FIELDS, Spec
from hpt.spacefile.strategy_config import config_keys
from hpt.spacefile.ranges import CategoricalRange, ContinuousRange, IntegerRange

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _models_in(annotation) -> list[tuple[str, type[BaseModel]]]:
    """(path suffix, model) for the models a field holds: itself, a mapping's values
    ('.<name>'), a list's items ('[]')."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _models_in(args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    if origin is dict:
        return [(".<name>" + suffix, m) for suffix, m in _models_in(args[1])]
    if origin is list:
        return [("[]" + suffix, m) for suffix, m in _models_in(args[0])]
    return [(suffix, m) for a in args for suffix, m in _models_in(a)]  # unions, Optional


def field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        if model is Spec and name not in USER_FIELDS:
            continue
        path = f"{prefix}{name}"
        paths.append(path)
        for suffix, inner in _models_in(field.annotation):
            paths += field_paths(inner, f"{path}{suffix}.")
    return paths


def test_every_field_the_spec_accepts_is_in_the_space_yaml_reference():
    text = (REPO / "docs" / "space-yaml.md").read_text()
    documented = set(re.findall(r"`([^`\s]+)`", text))
    paths = field_paths(Spec)
    # Ranges are a union the model picks by `type`: each kind's fields, under a name.
    for rng in (ContinuousRange, IntegerRange, CategoricalRange):
        paths += field_paths(rng, "hyperparameters.<name>.")
    paths += [f"strategy_config.{key}" for key in config_keys()]
    assert len(paths) > 40  # the walk found the nested models
    assert "trainer.entry_point" in paths and "channels.<name>.uri" in paths
    missing = [p for p in paths if p not in documented]
    assert missing == [], f"fields missing from docs/space-yaml.md: {missing}"


def test_no_document_points_outside_the_repository():
    for doc in DOCS:
        text = doc.read_text()
        assert "../shared" not in text, doc
        prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", prose):
            if re.match(r"[a-z]+://", target):
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
