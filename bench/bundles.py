"""Real-shaped Kubernetes bundles for bench B8, generated here (deterministic, no download).

- :func:`crds`: CustomResourceDefinitions whose OpenAPI schemas are as large as real operators'
  (prometheus-operator's are 400-800 KB each): nested objects and arrays of objects, long
  descriptions, enums, int-or-string fields, list-map markers - a structural schema the API
  server validates and stores like the real ones.
- :func:`mixed`: an install bundle of about 50 namespaced objects across 15+ kinds (RBAC,
  Deployments with full pod specs, Services, ConfigMaps, Secrets, NetworkPolicies, PDBs, an HPA,
  a CronJob, an Ingress, a StatefulSet, webhook configurations, one custom resource) plus its
  cluster-scoped companions (Namespace, ClusterRoles, ClusterRoleBindings, webhooks), the shape
  of Argo CD's install.yaml.
"""

from __future__ import annotations

import json
import random
from typing import Any

_VOCABULARY = (
    "the of a to is for when this field that be if not in specifies and by defaults value "
    "controller must object resource pod container selector label namespace version list "
    "configuration which should may are will used secret key name reference spec status "
    "template endpoint tls scrape interval timeout relabel rule alert storage volume port"
)
_WORDS = _VOCABULARY.split()


def _text(rnd: random.Random, lo: int, hi: int) -> str:
    words = [rnd.choice(_WORDS) for _ in range(rnd.randint(lo, hi))]
    return (" ".join(words).capitalize() + ".")[:2000]


def _leaf(rnd: random.Random) -> dict[str, Any]:
    kind = rnd.random()
    out: dict[str, Any]
    if kind < 0.45:
        out = {"type": "string"}
    elif kind < 0.6:
        out = {"type": "integer", "format": "int32"}
    elif kind < 0.72:
        out = {"type": "boolean"}
    elif kind < 0.82:
        out = {"type": "string", "enum": sorted({rnd.choice(_WORDS).capitalize() for _ in range(4)})}
    elif kind < 0.9:
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
    else:
        out = {"type": "object", "additionalProperties": {"type": "string"}}
    out["description"] = _text(rnd, 12, 60)
    return out


def _object(rnd: random.Random, depth: int, width: int) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for i in range(width):
        name = f"{rnd.choice(_WORDS)}{rnd.choice(_WORDS).capitalize()}{i}"
        roll = rnd.random()
        if depth > 0 and roll < 0.18:
            props[name] = _object(rnd, depth - 1, max(3, width // 2))
        elif depth > 0 and roll < 0.26:
            item = _object(rnd, depth - 1, max(3, width // 2))
            first = next(iter(item["properties"]))
            item["properties"][first] = {"type": "string", "description": _text(rnd, 8, 20)}
            item["required"] = [first]
            props[name] = {
                "type": "array",
                "description": _text(rnd, 12, 40),
                "items": item,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": [first],
            }
        else:
            props[name] = _leaf(rnd)
    return {"type": "object", "description": _text(rnd, 10, 40), "properties": props}


# Block-style YAML of these schemas is ~1.6x their compact JSON: sizes are given as YAML bytes
# (the files a user has; prometheus-operator's are 400-800 KB each) and met in JSON.
YAML_PER_JSON = 1.6


def crd(group: str, kind: str, size: int, seed: int, labels: dict[str, str]) -> dict[str, Any]:
    """One CRD (namespaced kind ``kind`` in ``group``) of about ``size`` bytes as YAML."""
    rnd = random.Random(seed)
    plural = kind.lower() + "s"
    spec: dict[str, Any] = {"type": "object", "description": _text(rnd, 20, 60), "properties": {}}
    doc: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{group}",
            "labels": dict(labels),
            "annotations": {"controller-gen.kubebuilder.io/version": "v0.19.0"},
        },
        "spec": {
            "group": group,
            "names": {
                "kind": kind,
                "listKind": kind + "List",
                "plural": plural,
                "singular": kind.lower(),
                "categories": ["bench"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": _text(rnd, 20, 40),
                            "properties": {
                                "apiVersion": {"type": "string", "description": _text(rnd, 20, 40)},
                                "kind": {"type": "string", "description": _text(rnd, 20, 40)},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                },
                            },
                            "required": ["spec"],
                        }
                    },
                }
            ],
        },
    }
    i = 0
    while len(json.dumps(doc)) * YAML_PER_JSON < size:
        spec["properties"][f"section{i}"] = _object(rnd, 2, 14)
        i += 1
    return doc


CRD_SIZES_KB = (720, 560, 400, 400, 400, 400, 400, 400, 400, 400)  # ~4.4 MB, like prometheus-operator's


def crds(
    group: str, labels: dict[str, str], sizes_kb: tuple[int, ...] = CRD_SIZES_KB
) -> list[dict[str, Any]]:
    return [crd(group, f"Widget{i}", kb * 1000, seed=i, labels=labels) for i, kb in enumerate(sizes_kb)]


def _container(name: str, i: int) -> dict[str, Any]:
    return {
        "name": name,
        "image": f"registry.invalid/bench/{name}:v1.{i}.0",
        "imagePullPolicy": "IfNotPresent",
        "args": [f"--component={name}", "--loglevel=info", "--metrics-addr=:8083", f"--shard={i}"],
        "env": [
            {"name": "COMPONENT", "value": name},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {
                "name": "CONFIG_TIMEOUT",
                "valueFrom": {"configMapKeyRef": {"name": "bench-cm-0", "key": "timeout", "optional": True}},
            },
        ],
        "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 8083, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
        "livenessProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 5},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "config", "mountPath": "/etc/app"}],
    }


def _pod_spec(name: str, i: int) -> dict[str, Any]:
    return {
        "serviceAccountName": f"bench-sa-{i % 6}",
        "containers": [_container(name, i)],
        "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "config", "configMap": {"name": "bench-cm-0"}}],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": {"app": name}},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        },
    }


def mixed(ns: str, group: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The install bundle: cluster-scoped objects first, then ~50 namespaced ones."""

    def meta(name: str, namespaced: bool = True) -> dict[str, Any]:
        m: dict[str, Any] = {"name": name, "labels": {**labels, "app.kubernetes.io/part-of": "bench"}}
        if namespaced:
            m["namespace"] = ns
        return m

    rules = [
        {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [group], "resources": ["*"], "verbs": ["*"]},
    ]
    out: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": meta(ns, False)}]
    cluster_prefix = ns
    for i in range(3):
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": meta(f"{cluster_prefix}-role-{i}", False),
                "rules": rules,
            }
        )
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": meta(f"{cluster_prefix}-binding-{i}", False),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": f"{cluster_prefix}-role-{i}",
                },
                "subjects": [{"kind": "ServiceAccount", "name": f"bench-sa-{i}", "namespace": ns}],
            }
        )
    # webhooks that match nothing any request touches: installed and diffed, never called
    hook = {
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Ignore",
        "timeoutSeconds": 5,
        "clientConfig": {"service": {"name": "bench-svc-0", "namespace": ns, "path": "/validate"}},
        "rules": [
            {
                "apiGroups": ["never.invalid"],
                "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["nothing"],
            }
        ],
    }
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        out.append(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": kind,
                "metadata": meta(f"{cluster_prefix}-{kind.lower()[:8]}", False),
                "webhooks": [{**hook, "name": f"{kind.lower()[:8]}.{ns}.bench.invalid"}],
            }
        )
    for i in range(6):
        out.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(f"bench-sa-{i}")})
    for i in range(4):
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": meta(f"bench-role-{i}"),
                "rules": rules[:2],
            }
        )
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": meta(f"bench-rolebinding-{i}"),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": f"bench-role-{i}",
                },
                "subjects": [{"kind": "ServiceAccount", "name": f"bench-sa-{i}", "namespace": ns}],
            }
        )
    for i in range(10):
        data = {"timeout": "30s", "log.level": "info", "url": f"https://bench-{i}.example.invalid"}
        if i < 3:  # a few carry real configuration files
            data["config.yaml"] = "\n".join(f"key{j}: value-{i}-{j}" for j in range(150))
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(f"bench-cm-{i}"), "data": data})
    for i in range(2):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": meta(f"bench-secret-{i}"),
                "type": "Opaque",
                "data": {},
            }
        )
    apps = [f"bench-app-{i}" for i in range(6)]
    for i, name in enumerate(apps):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta(f"bench-svc-{i}"),
                "spec": {
                    "selector": {"app": name},
                    "ports": [
                        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                        {"name": "metrics", "port": 8083, "targetPort": "metrics", "protocol": "TCP"},
                    ],
                },
            }
        )
    for i, name in enumerate(apps[:5]):
        out.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": meta(name),
                "spec": {
                    "replicas": 0,  # no Pods: the shared test plane has no nodes to run them
                    "revisionHistoryLimit": 3,
                    "selector": {"matchLabels": {"app": name}},
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": _pod_spec(name, i)},
                },
            }
        )
    out.append(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta(apps[5]),
            "spec": {
                "replicas": 0,
                "serviceName": "bench-svc-5",
                "selector": {"matchLabels": {"app": apps[5]}},
                "template": {"metadata": {"labels": {"app": apps[5]}}, "spec": _pod_spec(apps[5], 5)},
            },
        }
    )
    for i in range(4):
        out.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": meta(f"bench-netpol-{i}"),
                "spec": {
                    "podSelector": {"matchLabels": {"app": apps[i]}},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {"ports": [{"port": 8080, "protocol": "TCP"}, {"port": 8083, "protocol": "TCP"}]}
                    ],
                },
            }
        )
    for i in range(2):
        out.append(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": meta(f"bench-pdb-{i}"),
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": apps[i]}}},
            }
        )
    out.append(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta("bench-hpa"),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": apps[0]},
                "minReplicas": 1,
                "maxReplicas": 5,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 80},
                        },
                    }
                ],
            },
        }
    )
    out.append(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta("bench-cron"),
            "spec": {
                "schedule": "17 3 * * *",
                "suspend": True,
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {**_pod_spec("bench-cron", 0), "restartPolicy": "OnFailure"},
                        }
                    }
                },
            },
        }
    )
    out.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": meta("bench-ingress"),
            "spec": {
                "rules": [
                    {
                        "host": f"{ns}.example.invalid",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "bench-svc-0", "port": {"name": "http"}}},
                                }
                            ]
                        },
                    }
                ]
            },
        }
    )
    out.append(
        {
            "apiVersion": f"{group}/v1",
            "kind": "Widget0",
            "metadata": meta("bench-widget"),
            "spec": {},
        }
    )
    return out
