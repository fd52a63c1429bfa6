"""``autoconf cleanup``: delete what crashed or interrupted Kubernetes trials left behind.

Everything autoconf creates in a cluster is labelled ``app.kubernetes.io/managed-by=autoconf``
and ``autoconf.io/study=<study>``; this deletes the Jobs, Deployments, Services, ConfigMaps
and Pods that match, in one namespace.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cleanup",
        help="delete Kubernetes objects left by autoconf trials (by label)",
        description="Delete every Job, Deployment, Service, ConfigMap and Pod labelled "
        "app.kubernetes.io/managed-by=autoconf (and autoconf.io/study=NAME with --study).",
    )
    p.add_argument("--study", metavar="NAME", help="only this study's objects")
    p.add_argument(
        "--namespace", metavar="NS", help="namespace (default: the context's, else 'default')"
    )
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig file (default: ~/.kube/config)")
    p.add_argument("--context", metavar="C", help="kubeconfig context (default: the current one)")
    p.add_argument("--json", action="store_true", help="print the deleted objects as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import stress

    from .._deployment import LABELS

    selector = LABELS.selector(args.study)
    deployer = stress.get_deployer(
        "kubernetes",
        namespace=args.namespace,
        kubeconfig=args.kubeconfig,
        context=args.context,
        labels=LABELS,
    )
    deleted = deployer.cleanup(args.study)
    if args.json:
        print(json.dumps({"selector": selector, "deleted": deleted}))
    else:
        for item in deleted:
            print(f"deleted {item}")
        print(f"{len(deleted)} object(s) deleted ({selector})")
    return 0
