"""The small Terraform-file scanner: blocks, attributes, module sources, sensitivity."""

from __future__ import annotations

from envctl.terraform import hcl

TEXT = """
# variable "commented" {}
variable "plain" {}
variable "secret" {
  type      = string
  sensitive = true
  default   = "}{"
}
/* output "hidden" { value = 1 } */
output "out" {
  value = { a = "${var.plain}" }
}
output "sens" {
  value     = var.secret
  sensitive = true
}
module "net" {
  source = "../../modules/net"
  tags = {
    source = "not-this"
  }
}
module "remote" {
  source = "hashicorp/consul/aws"
}
data "external" "x" {
  program = ["sh", "-c", <<EOT
echo '{ "module": "no" }'
EOT
  ]
}
terraform {
  backend "s3" {}
}
"""


def test_finds_top_level_blocks_only() -> None:
    kinds = [(b.type, b.labels) for b in hcl.blocks(TEXT)]
    assert kinds == [
        ("variable", ("plain",)),
        ("variable", ("secret",)),
        ("output", ("out",)),
        ("output", ("sens",)),
        ("module", ("net",)),
        ("module", ("remote",)),
        ("data", ("external", "x")),
        ("terraform", ()),
    ]


def test_scan_reports_what_envctl_needs() -> None:
    info = hcl.scan({"main.tf": TEXT})
    assert info.variables == {"plain": False, "secret": True}
    assert info.variable_required == {"plain": True, "secret": False}
    assert info.outputs == {"out": False, "sens": True}
    assert [(s, line) for s, _f, line in info.module_sources] == [
        ("../../modules/net", 17),
        ("hashicorp/consul/aws", 23),
    ]
    assert info.external_data == (("main.tf", 26),)
    assert info.has_backend


def test_line_numbers_survive_comments_and_heredocs() -> None:
    text = '/* a\nb */\nlocals {\n  x = <<EOF\n}\n{\nEOF\n}\nvariable "v" {}\n'
    assert [(b.type, b.line) for b in hcl.blocks(text)] == [("locals", 3), ("variable", 9)]


def test_local_sources() -> None:
    assert hcl.is_local_source("./x") and hcl.is_local_source("../x")
    assert not hcl.is_local_source("git::https://example.com/x.git")
    assert not hcl.is_local_source("hashicorp/consul/aws")


def test_scan_reads_terraform_json_files() -> None:
    doc = {
        "variable": {"a": {}, "s": {"sensitive": True, "default": "x"}},
        "output": [{"o": {"value": "${var.a}", "sensitive": True}}],
        "module": {"m": {"source": "../m"}},
        "terraform": {"backend": {"local": {}}},
    }
    import json

    info = hcl.scan({"main.tf.json": json.dumps(doc)})
    assert info.variables == {"a": False, "s": True}
    assert info.variable_required == {"a": True, "s": False}
    assert info.outputs == {"o": True}
    assert info.module_sources == (("../m", "main.tf.json", 1),)
    assert info.has_backend
