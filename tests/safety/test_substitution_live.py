"""Manifests mean exactly what Git says, on the real control plane: values substituted after parsing.

An isolated environment (the ``make_env`` fixture: its own Git repo, KUBECONFIG at the real plane)
holds a Terraform stack whose outputs carry every tricky value class, env vars with the same
values, and layers that use them through stack outputs, env.vars and inputs, unquoted, quoted and
inside longer strings, in a plain layer and in a kustomize layer. ``envctl apply`` converges it;
the tests read the LIVE objects back. One output is the injection of issue 15: ``x"`` + newline +
``---`` + a ClusterRoleBinding of cluster-admin to ``system:unauthenticated``; it must end up as
the text of one ConfigMap value, and the plan's "will apply 1 objects" must be what apply applies.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
from harness import Env, live
from kubehelpers import get
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.safety

GROUP = "values.envctl.test"
STRINGS = {
    "octal": "0123",
    "yes": "yes",
    "time": "12:30",
    "date": "2024-01-01",
    "eq": "=",
    "lines": "line1\nline2",
    "win": "C:\\temp\\new",
    "comment": "a: b # c",
    "tilde": "~",
}
SCALARS: dict[str, Any] = {**STRINGS, "n": 3, "f": 1.5, "b": True}
STRUCTURES: dict[str, Any] = {"l": ["a", "b"], "m": {"k": "v"}}
VALUES = {**SCALARS, **STRUCTURES}


def _payload(name: str) -> str:
    return (
        'x"\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n'
        f"metadata:\n  name: pwned-{name}\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n"
        "subjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: 'system:unauthenticated'}\n"
    )


def _hcl(value: Any) -> str:
    return (
        json.dumps(value)
        if not isinstance(value, dict)
        else "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items()) + "}"
    )


def _fields(refs: dict[str, str]) -> str:
    """Spec lines using each reference unquoted, quoted and inside a longer string."""
    lines: list[str] = []
    for src, ref in refs.items():
        for k in VALUES:
            r = ref.format(k=k)
            lines.append(f"  {src}_{k}: ${{{r}}}")
            if k in SCALARS:
                lines.append(f'  {src}_{k}_q: "${{{r}}}"')
                lines.append(f"  {src}_{k}_t: '<${{{r}}}>'")
    return "\n".join(lines) + "\n"


def _expected(refs: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"op": "="}
    for src in refs:
        for k, v in VALUES.items():
            out[f"{src}_{k}"] = v
            if k in SCALARS:
                text = v if isinstance(v, str) else json.dumps(v)
                out[f"{src}_{k}_q"] = text
                out[f"{src}_{k}_t"] = f"<{text}>"
    return out


REFS = {"var": "env.vars.{k}", "input": "inputs.{k}", "out": "stack.s.outputs.{k}"}
CRD = f"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              x-kubernetes-preserve-unknown-fields: true
              properties:
                op:
                  type: string
                  enum:
                    - =
                    - "!="
                    - =~
"""


def build(repo: Env) -> None:
    """Replace the copied example's nodes by this test's stack and layers."""
    for d in ("stacks", "layers"):
        shutil.rmtree(repo.env_dir / d)
    env_vars = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in VALUES.items())
    repo.write("environment.yaml", f"name: {repo.name}\nvars:\n{env_vars}")
    outputs = "".join(f'output "{k}" {{\n  value = {_hcl(v)}\n}}\n' for k, v in VALUES.items())
    repo.write(
        "stacks/s/main.tf",
        f'resource "terraform_data" "token" {{\n  input = {json.dumps(_payload(repo.name))}\n}}\n'
        'output "token" {\n  value = terraform_data.token.output\n}\n' + outputs,
    )
    repo.write("layers/ns/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: app-${env.name}\n")
    repo.write("layers/crds/crd.yaml", CRD)
    # namespace: with a reference to the environment, as every environment can now share a layer
    layer = "namespace: app-${env.name}\ndepends_on: [layer.ns, layer.crds]\n"
    inputs = "inputs:\n" + "".join(f"  {k}: ${{env.vars.{k}}}\n" for k in VALUES)
    repo.write("layers/inject/layer.yaml", "namespace: app-${env.name}\ndepends_on: [layer.ns]\n")
    repo.write(
        "layers/inject/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: token\n"
        'data:\n  TOKEN: "${stack.s.outputs.token}"\n',
    )
    gadget = "apiVersion: {g}/v1\nkind: Gadget\nmetadata:\n  name: {n}\nspec:\n  op: =\n{f}"
    for name, kustomize in (("values", False), ("kvalues", True)):
        repo.write(f"layers/{name}/layer.yaml", layer + inputs)
        repo.write(f"layers/{name}/gadget.yaml", gadget.format(g=GROUP, n=name, f=_fields(REFS)))
        if kustomize:
            repo.write(f"layers/{name}/kustomization.yaml", "resources:\n  - gadget.yaml\n")
    repo.commit("values of every class")


def test_values_mean_what_git_says_and_an_injected_output_stays_one_value(
    example: Env, api_client: client.ApiClient
) -> None:
    build(example)
    plan = example.plan()
    assert plan.returncode in (0, 2), str(plan)
    assert "will apply 1 objects once stack.s is applied" in plan.output, str(plan)

    applied = example.apply()
    assert applied.returncode == 0, str(applied)

    ns = example.namespace
    cm = live(api_client, "ConfigMap", ns, "token")
    assert cm is not None and cm["data"] == {"TOKEN": _payload(example.name)}
    rbac = client.RbacAuthorizationV1Api(api_client)
    with pytest.raises(ApiException) as e:
        rbac.read_cluster_role_binding(f"pwned-{example.name}")
    assert e.value.status == 404
    inventory = client.CoreV1Api(api_client).read_namespaced_config_map(
        f"{example.name}.layer.inject", "envctl-system"
    )
    assert len(json.loads(inventory.data["objects"])) == 1  # the 1 object the plan announced

    for name in ("values", "kvalues"):
        gadget = get(
            api_client,
            {"apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": name, "namespace": ns}},
        )
        assert gadget is not None, name
        assert gadget["spec"] == _expected(REFS), name


def test_a_list_inside_a_string_is_refused_at_its_line_and_nothing_is_applied(
    example: Env, api_client: client.ApiClient
) -> None:
    build(example)
    example.write(
        "layers/values/gadget.yaml",
        example.path("layers/values/gadget.yaml").read_text() + "  bad: 'x-${env.vars.l}'\n",
    )
    example.commit("a list inside a string")
    run = example.apply()
    assert run.returncode == 78, str(run)
    assert "${env.vars.l} is a list: it cannot be part of a string" in run.output, str(run)
    assert "layers/values/gadget.yaml:" in run.output, str(run)
    assert live(api_client, "Namespace", "", example.namespace) is None
