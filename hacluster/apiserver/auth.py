"""Authentication (bearer tokens from the cluster config) and authorization (RBAC-like roles plus
Kubernetes' NodeRestriction) for the API server.

Called by the API server's handlers before they touch the store:
- `system:masters` (the admin) may do anything;
- `system:nodes` users named `system:node:NAME` (kubelets) may read, update only their own Node and its
  status, their own Lease in `kube-node-lease`, the status of pods bound to them and delete those pods
  (the kubelet's confirmation of a graceful deletion), and write events;
- anybody else (the viewer) may only get, list and watch.
Denials raise `Forbidden` with Kubernetes' message.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from hacluster.config import ClusterConfig
from hacluster.model.errors import Forbidden, Unauthorized
from hacluster.model.resources import Resource

READ_VERBS = frozenset({"get", "list", "watch"})
NODE_PREFIX = "system:node:"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return "system:masters" in self.groups

    @property
    def node_name(self) -> str | None:
        if "system:nodes" in self.groups and self.name.startswith(NODE_PREFIX):
            return self.name[len(NODE_PREFIX):]
        return None


class Authenticator:
    """Maps a bearer token to its user. Tokens are indexed by their SHA-256 (a cluster may have thousands of
    node identities), and the one candidate is then compared in constant time."""

    def __init__(self, cfg: ClusterConfig) -> None:
        self._by_digest = {hashlib.sha256(u.token.encode()).digest(): (u.token.encode(), User(u.name, tuple(u.groups)))
                           for u in cfg.users}

    def authenticate(self, authorization: str | None) -> User:
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized("Unauthorized")
        token = authorization[len("Bearer "):].strip().encode()
        candidate = self._by_digest.get(hashlib.sha256(token).digest())
        if candidate is None or not hmac.compare_digest(candidate[0], token):
            raise Unauthorized("Unauthorized")
        return candidate[1]


def _denied(user: User, verb: str, res: Resource, namespace: str, name: str, subresource: str) -> Forbidden:
    what = res.plural + (f"/{subresource}" if subresource else "")
    subject = f'{what} "{name}"' if name and verb != "create" else what
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    return Forbidden(f'{subject} is forbidden: User "{user.name}" cannot {verb} resource "{what}" in API group '
                     f'"{res.group}"{where}', kind=res.plural, name=name, group=res.group)


def authorize(user: User, verb: str, res: Resource, namespace: str, name: str, subresource: str = "",
              current: dict[str, Any] | None = None) -> None:
    """Raise Forbidden unless `user` may do `verb` on the object; `current` is the stored object (for the
    NodeRestriction checks on pods), when there is one."""
    if user.is_admin:
        return
    node = user.node_name
    if node is None:
        if verb in READ_VERBS and subresource != "log" or (subresource == "log" and verb == "get"):
            return
        raise _denied(user, verb, res, namespace, name, subresource)
    if verb in READ_VERBS:
        return
    plural = res.plural
    if plural == "events":
        if verb in ("create", "update", "patch"):
            return
    elif plural == "nodes":
        if verb in ("create", "update", "patch", "get") and name == node:
            return
        if name and name != node:
            raise Forbidden(f'nodes "{name}" is forbidden: node "{node}" is not allowed to modify node "{name}"',
                            kind="nodes", name=name)
    elif plural == "leases":
        if namespace == "kube-node-lease" and name == node and verb in ("create", "update", "patch"):
            return
        if namespace == "kube-node-lease" and verb == "create" and not name:
            return
        raise Forbidden(f'leases.coordination.k8s.io "{name}" is forbidden: can only access node lease with the '
                        "same name as the requesting node", kind="leases", name=name, group=res.group)
    elif plural == "pods":
        bound_to = ((current or {}).get("spec") or {}).get("nodeName")
        if subresource == "status" and verb in ("update", "patch"):
            if bound_to == node:
                return
            raise Forbidden(f'pods "{name}" is forbidden: node "{node}" can only update pod status for pods with '
                            "spec.nodeName set to itself", kind="pods", name=name)
        if subresource == "" and verb == "delete":
            if bound_to == node:
                return
            raise Forbidden(f'pods "{name}" is forbidden: node "{node}" can only delete pods with spec.nodeName '
                            "set to itself", kind="pods", name=name)
    raise _denied(user, verb, res, namespace, name, subresource)
