"""The one error the spec loader raises."""

from __future__ import annotations

from hpt.core.errors import UserError


class SpecError(UserError):
    """A space.yaml that cannot be used; `.problems` holds one full line per problem:
    `FILE: field.path: what is wrong (got X); how to fix it`."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
