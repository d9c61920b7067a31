"""Terraform diagnostics -> EngineError / StalePlanError, with locations and no secrets."""

from __future__ import annotations

import json

import pytest

from envctl.core.errors import ConfigError, EngineError, EnvctlError, StalePlanError
from envctl.terraform import diagnostics as diag
from envctl.terraform.stack import StackOutput

CANARY = "canary-diag-44aa"


def stream(*diags: dict[str, object]) -> str:
    lines = [json.dumps({"type": "version", "terraform": "1.15.5"})]
    lines += [json.dumps({"type": "diagnostic", "@level": "error", "diagnostic": d}) for d in diags]
    return "\n".join(lines) + "\nnot json\n"


def plan_error(summary: str, detail: str = "") -> EnvctlError:
    out = stream(
        {
            "severity": "error",
            "summary": summary,
            "detail": detail,
            "range": {"filename": "../../../../modules/x/main.tf", "start": {"line": 7}},
        }
    )
    return diag.error_from(
        diag.diagnostics_from_stream(out),
        node="stack.app",
        command="terraform -chdir=/w plan",
        what="terraform plan",
        hint="fix it",
        to_repo_path=lambda f: "modules/x/main.tf",
        redact=diag.Redactor([CANARY]),
    )


def test_a_provider_error_at_plan_names_node_file_line_command_and_hides_secrets() -> None:
    err = plan_error("Error reading the data source", f"the value {CANARY} is wrong")
    assert isinstance(err, EngineError) and err.exit_code == 1
    assert str(err) == "stack.app: modules/x/main.tf:7: terraform plan failed: Error reading the data source"
    assert err.detail is not None and err.detail.startswith("command: terraform -chdir=/w plan")
    assert CANARY not in (err.detail or "") and diag.REDACTED in (err.detail or "")


@pytest.mark.parametrize(
    "summary",
    [
        "Reference to undeclared input variable",
        "Invalid function argument",
        "Call to unknown function",
        "Invalid operand",
        "Invalid value for variable",
        "Unsupported attribute",
    ],
)
def test_an_error_evaluating_the_configuration_at_plan_is_a_configuration_error(summary: str) -> None:
    err = plan_error(summary, f"the value {CANARY} is wrong")
    assert isinstance(err, ConfigError) and err.exit_code == 78
    assert str(err.location) == "modules/x/main.tf:7"
    assert err.message == f"Terraform configuration error: {summary}"
    assert CANARY not in f"{err.message} {err.detail} {err.hint}"


def test_stale_plan_maps_to_exit_4() -> None:
    out = stream({"severity": "error", "summary": "Saved plan is stale", "detail": "state changed"})
    err = diag.error_from(
        diag.diagnostics_from_stream(out),
        node="stack.app",
        command="terraform apply p",
        what="terraform apply",
        hint="",
        to_repo_path=lambda f: f,
        redact=diag.Redactor(),
    )
    assert isinstance(err, StalePlanError) and err.exit_code == 4


def test_text_diagnostics_of_init() -> None:
    text = (
        "\n│ Error: Failed to query available provider packages\n│\n│ on main.tf line 12, in terraform:\n"
        "│ Could not retrieve the list of available versions\n╵\n"
    )
    (d,) = diag.diagnostics_from_text(text)
    assert (d.severity, d.summary, d.filename, d.line) == (
        "error",
        "Failed to query available provider packages",
        "main.tf",
        12,
    )


def test_validate_diagnostics() -> None:
    doc = {"valid": False, "diagnostics": [{"severity": "warning", "summary": "w"}]}
    assert [d.summary for d in diag.diagnostics_from_validate(json.dumps(doc))] == ["w"]


def test_redactor_handles_non_strings_and_ignores_tiny_values() -> None:
    r = diag.Redactor([{"k": [CANARY, 123456]}, "ab", True])
    assert r(f"x {CANARY} 123456 ab") == f"x {diag.REDACTED} {diag.REDACTED} ab"


def test_stack_output_never_shows_a_sensitive_value() -> None:
    out = {"a": StackOutput(CANARY, sensitive=True), "b": StackOutput("shown")}
    assert CANARY not in str(out) and CANARY not in repr(out["a"]) and "shown" in str(out)
