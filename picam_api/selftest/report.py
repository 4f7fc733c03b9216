"""The self-test's result: one PASS/WARN/FAIL line per check, as text or JSON."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclass
class Check:
    """One thing that must work: ``detail`` says what was found, ``fix`` what to do."""

    name: str
    status: str
    detail: str
    fix: str | None = None
    data: dict = field(default_factory=dict)  # figures for --json (times, sizes, bytes)


@dataclass
class Report:
    """All checks of one run, and how the camera was reached (``mode``)."""

    mode: str  # "local": opened here; "service": asked the running server
    note: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(check.status == FAIL for check in self.checks)

    def add(self, name: str, status: str, detail: str, fix: str | None = None,
            **data) -> Check:
        check = Check(name, status, detail, fix if status != PASS else None, data)
        self.checks.append(check)
        return check

    def text(self) -> str:
        width = max([len(check.name) for check in self.checks] + [8])
        lines = [f"picam-api selftest: {self.note}"]
        for check in self.checks:
            lines.append(f"{check.status}  {check.name:<{width}}  {check.detail}")
            if check.fix:
                lines.append(f"{'':6}{'':<{width}}  fix: {check.fix}")
        failed = sum(check.status == FAIL for check in self.checks)
        warned = sum(check.status == WARN for check in self.checks)
        lines.append(f"{failed} failed, {warned} warnings, "
                     f"{len(self.checks) - failed - warned} passed")
        return "\n".join(lines)

    def json(self) -> str:
        return json.dumps({"ok": self.ok, "mode": self.mode, "note": self.note,
                           "checks": [asdict(check) for check in self.checks]}, indent=2)
