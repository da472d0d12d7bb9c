"""Validation and defaulting of objects with Kubernetes' rules and wording.

Called by the API server on create and update, after the body was decoded (`hacluster.model.schema`) and
before anything is proposed to the store. Every error is collected with its field path, so a bad pod is
answered with all of its problems in one 422 `Invalid` Status, worded as Kubernetes words them
(`spec.containers[0].image: Required value`). Defaults are the ones the Kubernetes API server applies.

One file, longer than most: one validator per kind and field, as Kubernetes keeps them
(pkg/apis/core/validation), sharing the error collector and the field-path helpers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from hacluster.model import errors as E
from hacluster.model.errors import Cause
from hacluster.model.quantity import QuantityError, parse_quantity

Obj = dict[str, Any]

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"

_LABEL_RE = re.compile("^" + DNS1123_LABEL_FMT + "$")
_SUBDOMAIN_RE = re.compile("^" + DNS1123_SUBDOMAIN_FMT + "$")
_QUALIFIED_RE = re.compile("^" + QUALIFIED_NAME_FMT + "$")
_LABEL_VALUE_RE = re.compile("^" + LABEL_VALUE_FMT + "$")

LABEL_ERR = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             f"validation is '{DNS1123_LABEL_FMT}')")
SUBDOMAIN_ERR = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                 "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
                 f"for validation is '{DNS1123_SUBDOMAIN_FMT}')")
QUALIFIED_ERR = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                 "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                 f"validation is '{QUALIFIED_NAME_FMT}')")
LABEL_VALUE_ERR = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
                   "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
                   f"'my_value',  or '12345', regex used for validation is '{LABEL_VALUE_FMT}')")

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
TAINT_EFFECTS = ["NoExecute", "NoSchedule", "PreferNoSchedule"]
TOLERATION_OPERATORS = ["Equal", "Exists"]
NODE_SELECTOR_OPERATORS = ["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"]
LABEL_SELECTOR_OPERATORS = ["DoesNotExist", "Exists", "In", "NotIn"]
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage", "pods", "storage")
TOTAL_ANNOTATION_SIZE_LIMIT_B = 256 * 1024
DEFAULT_SCHEDULER = "default-scheduler"
DEFAULT_TOLERATION_SECONDS = 300


# ------------------------------------------------------------------------------------- names
def dns1123_label(value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not _LABEL_RE.match(value):
        out.append(LABEL_ERR)
    return out


def dns1123_subdomain(value: str) -> list[str]:
    out = []
    if len(value) > 253:
        out.append("must be no more than 253 characters")
    if not _SUBDOMAIN_RE.match(value):
        out.append(SUBDOMAIN_ERR)
    return out


def qualified_name(value: str) -> list[str]:
    """Label and annotation keys: an optional DNS subdomain prefix, '/', and a name of <= 63 chars."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        errs = ["prefix part " + m for m in dns1123_subdomain(prefix)]
        if errs:
            return errs
    else:
        return ["a qualified name " + QUALIFIED_ERR.replace("name part ", "", 1) +
                " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        return ["name part must be non-empty"]
    out = []
    if len(name) > 63:
        out.append("name part must be no more than 63 characters")
    if not _QUALIFIED_RE.match(name):
        out.append(QUALIFIED_ERR)
    return out


def label_value(value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.match(value):
        out.append(LABEL_VALUE_ERR)
    return out


def validate_labels(labels: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    if not labels:
        return causes
    for k, v in labels.items():
        for msg in qualified_name(k):
            causes.append(E.invalid_value(path, k, msg))
        for msg in label_value(v if isinstance(v, str) else str(v)):
            causes.append(E.invalid_value(f"{path}", v, msg))
    return causes


def validate_annotations(annotations: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    if not annotations:
        return causes
    total = 0
    for k, v in annotations.items():
        for msg in qualified_name(k):
            causes.append(E.invalid_value(path, k, msg))
        total += len(k) + len(v or "")
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B:
        causes.append(E.too_long(path, "", TOTAL_ANNOTATION_SIZE_LIMIT_B))
    return causes


# ---------------------------------------------------------------------------------- metadata
def validate_metadata(meta: Obj, *, namespaced: bool, name_check: Callable[[str], list[str]]) -> list[Cause]:
    causes: list[Cause] = []
    name = meta.get("name") or ""
    if not name:
        if not meta.get("generateName"):
            causes.append(Cause("FieldValueRequired", "Required value: name or generateName is required",
                                "metadata.name"))
    else:
        for msg in name_check(name):
            causes.append(E.invalid_value("metadata.name", name, msg))
    if namespaced:
        ns = meta.get("namespace") or ""
        for msg in dns1123_label(ns) if ns else []:
            causes.append(E.invalid_value("metadata.namespace", ns, msg))
    causes += validate_labels(meta.get("labels"), "metadata.labels")
    causes += validate_annotations(meta.get("annotations"), "metadata.annotations")
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for f in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(f):
                causes.append(E.required(f"metadata.ownerReferences[{i}].{f}"))
    return causes


# ------------------------------------------------------------------------------------ quantities
def _resource_name_ok(name: str) -> bool:
    if name in STANDARD_RESOURCES or name.startswith("hugepages-") or name.startswith("requests."):
        return True
    return "/" in name and not qualified_name(name)


def validate_resources(res: Any, path: str) -> list[Cause]:
    """requests/limits: known names, valid non-negative quantities, requests <= limits."""
    causes: list[Cause] = []
    if not res:
        return causes
    parsed: dict[str, dict[str, Any]] = {"limits": {}, "requests": {}}
    for part in ("limits", "requests"):
        for rname, raw in (res.get(part) or {}).items():
            p = f"{path}.{part}[{rname}]"
            if not _resource_name_ok(rname):
                causes.append(E.invalid_value(p, rname, "must be a standard resource type or fully qualified"))
                continue
            try:
                q = parse_quantity(raw)
            except QuantityError as exc:
                causes.append(E.invalid_value(p, raw, str(exc)))
                continue
            if q.value < 0:
                causes.append(E.invalid_value(p, raw if isinstance(raw, str) else str(raw),
                                              "must be greater than or equal to 0"))
                continue
            if rname == "cpu" and q.value != 0 and q.value * 1000 < 1:
                causes.append(E.invalid_value(p, str(raw), "must be greater than or equal to 1m"))
            parsed[part][rname] = q
    for rname, req in parsed["requests"].items():
        lim = parsed["limits"].get(rname)
        if lim is not None and req.value > lim.value:
            causes.append(E.invalid_value(f"{path}.requests", req.canonical(),
                                          f"must be less than or equal to {rname} limit of {lim.canonical()}"))
    return causes


# ---------------------------------------------------------------------------------- containers
def validate_containers(containers: Any, path: str, seen: set[str], *, required: bool) -> list[Cause]:
    causes: list[Cause] = []
    if not containers:
        if required:
            causes.append(E.required(path))
        return causes
    for i, c in enumerate(containers):
        cp = f"{path}[{i}]"
        name = c.get("name") or ""
        if not name:
            causes.append(E.required(f"{cp}.name"))
        else:
            for msg in dns1123_label(name):
                causes.append(E.invalid_value(f"{cp}.name", name, msg))
            if name in seen:
                causes.append(E.duplicate(f"{cp}.name", name))
            seen.add(name)
        image = c.get("image")
        if not image:
            causes.append(E.required(f"{cp}.image"))
        elif image != image.strip():
            causes.append(E.invalid_value(f"{cp}.image", image, "must not have leading or trailing whitespace"))
        policy = c.get("imagePullPolicy")
        if policy and policy not in PULL_POLICIES:
            causes.append(E.not_supported(f"{cp}.imagePullPolicy", policy, PULL_POLICIES))
        port_names: set[str] = set()
        for j, port in enumerate(c.get("ports") or []):
            pp = f"{cp}.ports[{j}]"
            cport = port.get("containerPort")
            if not cport:
                causes.append(E.required(f"{pp}.containerPort"))
            elif not 1 <= cport <= 65535:
                causes.append(E.invalid_value(f"{pp}.containerPort", cport, "must be between 1 and 65535, "
                                                                            "inclusive"))
            hport = port.get("hostPort")
            if hport and not 1 <= hport <= 65535:
                causes.append(E.invalid_value(f"{pp}.hostPort", hport, "must be between 1 and 65535, inclusive"))
            proto = port.get("protocol")
            if proto and proto not in PROTOCOLS:
                causes.append(E.not_supported(f"{pp}.protocol", proto, PROTOCOLS))
            pname = port.get("name")
            if pname:
                if pname in port_names:
                    causes.append(E.duplicate(f"{pp}.name", pname))
                port_names.add(pname)
        for j, env in enumerate(c.get("env") or []):
            if not env.get("name"):
                causes.append(E.required(f"{cp}.env[{j}].name"))
        causes += validate_resources(c.get("resources"), f"{cp}.resources")
    return causes


def _validate_node_selector_requirement(req: Obj, path: str, *, fields: bool) -> list[Cause]:
    causes: list[Cause] = []
    op = req.get("operator") or ""
    values = req.get("values") or []
    if not req.get("key"):
        causes.append(E.required(f"{path}.key"))
    elif not fields:
        for msg in qualified_name(req["key"]):
            causes.append(E.invalid_value(f"{path}.key", req["key"], msg))
    if op not in NODE_SELECTOR_OPERATORS:
        causes.append(E.not_supported(f"{path}.operator", op, NODE_SELECTOR_OPERATORS))
    elif op in ("In", "NotIn") and not values:
        causes.append(Cause("FieldValueRequired", "Required value: must be specified when `operator` is 'In' or "
                                                  "'NotIn'", f"{path}.values"))
    elif op in ("Exists", "DoesNotExist") and values:
        causes.append(E.forbidden_field(f"{path}.values", "may not be specified when `operator` is 'Exists' or "
                                                          "'DoesNotExist'"))
    elif op in ("Gt", "Lt"):
        if len(values) != 1:
            causes.append(Cause("FieldValueRequired", "Required value: must be specified single value when "
                                                      "`operator` is 'Lt' or 'Gt'", f"{path}.values"))
        else:
            try:
                int(values[0])
            except ValueError:
                causes.append(E.invalid_value(f"{path}.values[0]", values[0], "must be a valid integer"))
    return causes


def _validate_node_selector_term(term: Obj, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, req in enumerate(term.get("matchExpressions") or []):
        causes += _validate_node_selector_requirement(req, f"{path}.matchExpressions[{i}]", fields=False)
    for i, req in enumerate(term.get("matchFields") or []):
        causes += _validate_node_selector_requirement(req, f"{path}.matchFields[{i}]", fields=True)
    return causes


def validate_affinity(affinity: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    na = (affinity or {}).get("nodeAffinity") or {}
    required_sel = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required_sel is not None:
        rp = f"{path}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        terms = required_sel.get("nodeSelectorTerms") or []
        if not terms:
            causes.append(Cause("FieldValueRequired", "Required value: must have at least one node selector term",
                                f"{rp}.nodeSelectorTerms"))
        for i, term in enumerate(terms):
            causes += _validate_node_selector_term(term, f"{rp}.nodeSelectorTerms[{i}]")
    for i, pref in enumerate(na.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
        pp = f"{path}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        w = pref.get("weight", 0)
        if not 1 <= (w or 0) <= 100:
            causes.append(E.invalid_value(f"{pp}.weight", w, "must be in the range 1-100"))
        causes += _validate_node_selector_term(pref.get("preference") or {}, f"{pp}.preference")
    return causes


def validate_tolerations(tolerations: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, t in enumerate(tolerations or []):
        tp = f"{path}[{i}]"
        key = t.get("key") or ""
        op = t.get("operator") or "Equal"
        if key:
            for msg in qualified_name(key):
                causes.append(E.invalid_value(f"{tp}.key", key, msg))
        if not key and op != "Exists":
            causes.append(E.invalid_value(f"{tp}.operator", op, "operator must be Exists when `key` is empty, "
                                                                "which means \"match all values and all keys\""))
        if op not in TOLERATION_OPERATORS:
            causes.append(E.not_supported(f"{tp}.operator", op, TOLERATION_OPERATORS))
        elif op == "Exists" and t.get("value"):
            causes.append(E.invalid_value(f"{tp}.operator", t.get("value"),
                                          "value must be empty when `operator` is 'Exists'"))
        elif op == "Equal" and t.get("value"):
            for msg in label_value(t["value"]):
                causes.append(E.invalid_value(f"{tp}.value", t["value"], msg))
        effect = t.get("effect") or ""
        if effect and effect not in TAINT_EFFECTS:
            causes.append(E.not_supported(f"{tp}.effect", effect, TAINT_EFFECTS))
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            causes.append(E.invalid_value(f"{tp}.effect", effect, "effect must be 'NoExecute' when "
                                                                  "`tolerationSeconds` is set"))
    return causes


PROBE_KINDS = ("livenessProbe", "readinessProbe", "startupProbe")
PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}


def validate_probe(probe: Any, path: str, *, liveness: bool) -> list[Cause]:
    """A container probe as Kubernetes' validateProbe checks it (probes are typed loosely by the schema)."""
    if probe is None:
        return []
    if not isinstance(probe, dict):
        return [E.invalid_value(path, probe, "must be an object")]
    causes: list[Cause] = []
    handlers = [h for h in PROBE_HANDLERS if probe.get(h) is not None]
    if not handlers:
        causes.append(Cause("FieldValueRequired", "Required value: must specify a handler type", path))
    elif len(handlers) > 1:
        causes.append(E.forbidden_field(f"{path}.{handlers[1]}", "may not specify more than 1 handler type"))
    for field, minimum in (("initialDelaySeconds", 0), ("timeoutSeconds", 1), ("periodSeconds", 1),
                           ("successThreshold", 1), ("failureThreshold", 1), ("terminationGracePeriodSeconds", 1)):
        v = probe.get(field)
        if v is None:
            continue
        if not isinstance(v, int) or isinstance(v, bool):
            causes.append(E.invalid_value(f"{path}.{field}", v, "must be an integer"))
        elif v < minimum:
            causes.append(E.invalid_value(f"{path}.{field}", v, "must be greater than or equal to "
                                                                 f"{minimum}"))
    if liveness and probe.get("successThreshold") not in (None, 1):
        causes.append(E.invalid_value(f"{path}.successThreshold", probe["successThreshold"], "must be 1"))
    exec_ = probe.get("exec")
    if isinstance(exec_, dict) and not exec_.get("command"):
        causes.append(E.required(f"{path}.exec.command"))
    for h in ("httpGet", "tcpSocket"):
        spec = probe.get(h)
        if isinstance(spec, dict):
            port = spec.get("port")
            if port is None or port == "" or (isinstance(port, int) and not 1 <= port <= 65535):
                causes.append(E.invalid_value(f"{path}.{h}.port", port, "must be between 1 and 65535, inclusive")
                              if port not in (None, "") else E.required(f"{path}.{h}.port"))
    return causes


def default_probe(probe: Any) -> None:
    """Kubernetes' SetDefaults_Probe and SetDefaults_HTTPGetAction, in place."""
    if not isinstance(probe, dict):
        return
    for k, v in PROBE_DEFAULTS.items():
        probe.setdefault(k, v)
    http = probe.get("httpGet")
    if isinstance(http, dict):
        http.setdefault("path", "/")
        http.setdefault("scheme", "HTTP")


def validate_pod_spec(spec: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(spec, dict):
        return [E.required(f"{path}.containers")]
    seen: set[str] = set()
    causes += validate_containers(spec.get("initContainers"), f"{path}.initContainers", seen, required=False)
    causes += validate_containers(spec.get("containers"), f"{path}.containers", seen, required=True)
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in RESTART_POLICIES:
        causes.append(E.not_supported(f"{path}.restartPolicy", rp, RESTART_POLICIES))
    dp = spec.get("dnsPolicy")
    if dp is not None and dp not in DNS_POLICIES:
        causes.append(E.not_supported(f"{path}.dnsPolicy", dp, DNS_POLICIES))
    tgp = spec.get("terminationGracePeriodSeconds")
    if tgp is not None and tgp < 0:
        causes.append(E.invalid_value(f"{path}.terminationGracePeriodSeconds", tgp,
                                      "must be greater than or equal to 0"))
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and not 1 <= ads <= 2147483647:
        causes.append(E.invalid_value(f"{path}.activeDeadlineSeconds", ads,
                                      "must be between 1 and 2147483647, inclusive"))
    for i, c in enumerate(spec.get("containers") or ()):
        if isinstance(c, dict):
            for kind in PROBE_KINDS:
                causes += validate_probe(c.get(kind), f"{path}.containers[{i}].{kind}",
                                         liveness=kind != "readinessProbe")
    causes += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    causes += validate_affinity(spec.get("affinity"), f"{path}.affinity")
    causes += validate_tolerations(spec.get("tolerations"), f"{path}.tolerations")
    node_name = spec.get("nodeName")
    if node_name:
        for msg in dns1123_subdomain(node_name):
            causes.append(E.invalid_value(f"{path}.nodeName", node_name, msg))
    for rname, raw in (spec.get("overhead") or {}).items():
        try:
            parse_quantity(raw)
        except QuantityError as exc:
            causes.append(E.invalid_value(f"{path}.overhead[{rname}]", raw, str(exc)))
    return causes


# ---------------------------------------------------------------------------------------- kinds
def validate_pod(pod: Obj) -> list[Cause]:
    causes = validate_metadata(pod.get("metadata") or {}, namespaced=True, name_check=dns1123_subdomain)
    causes += validate_pod_spec(pod.get("spec"), "spec")
    return causes


_MUTABLE_POD_SPEC_MSG = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")


def validate_pod_update(new: Obj, old: Obj) -> list[Cause]:
    """A pod's spec is immutable but for images, activeDeadlineSeconds and added tolerations."""
    causes = validate_pod(new)
    if causes:
        return causes
    a, b = dict(new.get("spec") or {}), dict(old.get("spec") or {})
    for key in ("containers", "initContainers"):
        a[key] = [{k: v for k, v in c.items() if k != "image"} for c in a.get(key) or []]
        b[key] = [{k: v for k, v in c.items() if k != "image"} for c in b.get(key) or []]
    a.pop("activeDeadlineSeconds", None)
    b.pop("activeDeadlineSeconds", None)
    new_tol, old_tol = a.pop("tolerations", None) or [], b.pop("tolerations", None) or []
    if old_tol and new_tol[: len(old_tol)] != old_tol:
        causes.append(E.forbidden_field("spec.tolerations", "existing toleration can not be modified except "
                                                            "its tolerationSeconds"))
    if not b.get("nodeName") and a.get("nodeName"):
        pass  # set through binding, compared below like the rest
    if a != b:
        causes.append(E.forbidden_field("spec", _MUTABLE_POD_SPEC_MSG))
    return causes


def validate_node(node: Obj) -> list[Cause]:
    causes = validate_metadata(node.get("metadata") or {}, namespaced=False, name_check=dns1123_subdomain)
    spec = node.get("spec") or {}
    for i, t in enumerate(spec.get("taints") or []):
        tp = f"spec.taints[{i}]"
        if not t.get("key"):
            causes.append(E.required(f"{tp}.key"))
        else:
            for msg in qualified_name(t["key"]):
                causes.append(E.invalid_value(f"{tp}.key", t["key"], msg))
        if t.get("value"):
            for msg in label_value(t["value"]):
                causes.append(E.invalid_value(f"{tp}.value", t["value"], msg))
        effect = t.get("effect") or ""
        if not effect:
            causes.append(E.required(f"{tp}.effect"))
        elif effect not in TAINT_EFFECTS:
            causes.append(E.not_supported(f"{tp}.effect", effect, TAINT_EFFECTS))
    status = node.get("status") or {}
    for part in ("capacity", "allocatable"):
        for rname, raw in (status.get(part) or {}).items():
            try:
                q = parse_quantity(raw)
                if q.value < 0:
                    causes.append(E.invalid_value(f"status.{part}[{rname}]", raw,
                                                  "must be greater than or equal to 0"))
            except QuantityError as exc:
                causes.append(E.invalid_value(f"status.{part}[{rname}]", raw, str(exc)))
    return causes


def validate_event(event: Obj) -> list[Cause]:
    causes = validate_metadata(event.get("metadata") or {}, namespaced=True, name_check=dns1123_subdomain)
    inv = event.get("involvedObject") or {}
    ns = (event.get("metadata") or {}).get("namespace", "")
    if inv.get("namespace") and ns and inv["namespace"] != ns:
        causes.append(E.invalid_value("involvedObject.namespace", inv["namespace"], "does not match "
                                                                                     "event.namespace"))
    etype = event.get("type")
    if etype and etype not in ("Normal", "Warning"):
        causes.append(E.not_supported("type", etype, ["Normal", "Warning"]))
    return causes


def validate_lease(lease: Obj) -> list[Cause]:
    causes = validate_metadata(lease.get("metadata") or {}, namespaced=True, name_check=dns1123_subdomain)
    spec = lease.get("spec") or {}
    d = spec.get("leaseDurationSeconds")
    if d is not None and d <= 0:
        causes.append(E.invalid_value("spec.leaseDurationSeconds", d, "must be greater than 0"))
    t = spec.get("leaseTransitions")
    if t is not None and t < 0:
        causes.append(E.invalid_value("spec.leaseTransitions", t, "must be greater than or equal to 0"))
    return causes


def validate_namespace(ns: Obj) -> list[Cause]:
    return validate_metadata(ns.get("metadata") or {}, namespaced=False, name_check=dns1123_label)


def validate_label_selector(sel: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    if not sel:
        return causes
    causes += validate_labels(sel.get("matchLabels"), f"{path}.matchLabels")
    for i, req in enumerate(sel.get("matchExpressions") or []):
        rp = f"{path}.matchExpressions[{i}]"
        op = req.get("operator") or ""
        if op not in LABEL_SELECTOR_OPERATORS:
            causes.append(E.not_supported(f"{rp}.operator", op, LABEL_SELECTOR_OPERATORS))
        elif op in ("In", "NotIn") and not req.get("values"):
            causes.append(Cause("FieldValueRequired", "Required value: must be specified when `operator` is "
                                                      "'In' or 'NotIn'", f"{rp}.values"))
        elif op in ("Exists", "DoesNotExist") and req.get("values"):
            causes.append(E.forbidden_field(f"{rp}.values", "may not be specified when `operator` is 'Exists' "
                                                            "or 'DoesNotExist'"))
    return causes


def validate_replicaset(rs: Obj) -> list[Cause]:
    from hacluster.model.selectors import label_selector_matches

    causes = validate_metadata(rs.get("metadata") or {}, namespaced=True, name_check=dns1123_subdomain)
    spec = rs.get("spec") or {}
    replicas = spec.get("replicas")
    if replicas is not None and replicas < 0:
        causes.append(E.invalid_value("spec.replicas", replicas, "must be greater than or equal to 0"))
    sel = spec.get("selector")
    if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        causes.append(E.required("spec.selector"))
    else:
        causes += validate_label_selector(sel, "spec.selector")
    template = spec.get("template") or {}
    tmeta = template.get("metadata") or {}
    labels = tmeta.get("labels") or {}
    causes += validate_labels(labels, "spec.template.metadata.labels")
    if sel and (sel.get("matchLabels") or sel.get("matchExpressions")) and not label_selector_matches(sel, labels):
        shown = "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items())) + "}"
        causes.append(Cause("FieldValueInvalid", f"Invalid value: {shown}: `selector` does not match template "
                                                  "`labels`", "spec.template.metadata.labels"))
    causes += validate_pod_spec(template.get("spec"), "spec.template.spec")
    rp = (template.get("spec") or {}).get("restartPolicy")
    if rp is not None and rp != "Always" and rp in RESTART_POLICIES:
        causes.append(E.not_supported("spec.template.spec.restartPolicy", rp, ["Always"]))
    return causes


def _validate_template_selector(spec: Obj) -> list[Cause]:
    """selector required and well formed, template labels valid and matched by it (Deployment, Job)."""
    from hacluster.model.selectors import label_selector_matches

    causes: list[Cause] = []
    sel = spec.get("selector")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        causes.append(E.required("spec.selector"))
    else:
        causes += validate_label_selector(sel, "spec.selector")
        if not label_selector_matches(sel, labels):
            shown = "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items())) + "}"
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {shown}: `selector` does not match "
                                                      "template `labels`", "spec.template.metadata.labels"))
    causes += validate_labels(labels, "spec.template.metadata.labels")
    return causes


def _non_negative(spec: Obj, field: str, causes: list[Cause]) -> None:
    value = spec.get(field)
    if value is not None and value < 0:
        causes.append(E.invalid_value(f"spec.{field}", value, "must be greater than or equal to 0"))


def _int_or_percent(value: Any, path: str, causes: list[Cause]) -> None:
    from hacluster.model.intstr import IntOrPercentError, percent_of

    if value is None:
        return
    try:
        pct = percent_of(value)
    except IntOrPercentError as exc:
        causes.append(E.invalid_value(path, value, str(exc)))
        return
    if pct is None and int(value) < 0:
        causes.append(E.invalid_value(path, value, "must be greater than or equal to 0"))
    if pct is not None and path.endswith("maxUnavailable") and pct > 100:
        causes.append(E.invalid_value(path, value, "must not be greater than 100%"))


def validate_deployment(d: Obj) -> list[Cause]:
    """apps/v1 Deployment, as Kubernetes' ValidateDeployment words it."""
    from hacluster.model.intstr import is_zero

    causes = validate_metadata(d.get("metadata") or {}, namespaced=True, name_check=dns1123_subdomain)
    spec = d.get("spec") or {}
    for field in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
        _non_negative(spec, field, causes)
    causes += _validate_template_selector(spec)
    template = spec.get("template") or {}
    causes += validate_pod_spec(template.get("spec"), "spec.template.spec")
    rp = (template.get("spec") or {}).get("restartPolicy")
    if rp is not None and rp != "Always" and rp in RESTART_POLICIES:
        causes.append(E.not_supported("spec.template.spec.restartPolicy", rp, ["Always"]))
    strategy = spec.get("strategy") or {}
    stype = strategy.get("type")
    if stype not in ("RollingUpdate", "Recreate"):
        causes.append(E.not_supported("spec.strategy.type", stype, ["Recreate", "RollingUpdate"]) if stype
                      else E.required("spec.strategy.type"))
    rolling = strategy.get("rollingUpdate")
    if stype == "Recreate" and rolling is not None:
        causes.append(E.forbidden_field("spec.strategy.rollingUpdate",
                                        "may not be specified when strategy `type` is 'Recreate'"))
    elif stype == "RollingUpdate":
        rolling = rolling or {}
        surge, unavailable = rolling.get("maxSurge"), rolling.get("maxUnavailable")
        _int_or_percent(surge, "spec.strategy.rollingUpdate.maxSurge", causes)
        _int_or_percent(unavailable, "spec.strategy.rollingUpdate.maxUnavailable", causes)
        if surge is not None and unavailable is not None and is_zero(surge) and is_zero(unavailable):
            causes.append(E.invalid_value("spec.strategy.rollingUpdate.maxUnavailable", unavailable,
                                          "may not be 0 when `maxSurge` is 0"))
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        if deadline <= 0:
            causes.append(E.invalid_value("spec.progressDeadlineSeconds", deadline, "must be greater than 0"))
        elif deadline <= int(spec.get("minReadySeconds") or 0):
            causes.append(E.invalid_value("spec.progressDeadlineSeconds", deadline,
                                          "must be greater than minReadySeconds"))
    return causes


def validate_job(job: Obj) -> list[Cause]:
    """batch/v1 Job, as Kubernetes' ValidateJob words it."""
    causes = validate_metadata(job.get("metadata") or {}, namespaced=True, name_check=dns1123_subdomain)
    spec = job.get("spec") or {}
    for field in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        _non_negative(spec, field, causes)
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and deadline <= 0:
        causes.append(E.invalid_value("spec.activeDeadlineSeconds", deadline, "must be greater than 0"))
    mode = spec.get("completionMode")
    if mode not in (None, "NonIndexed"):
        causes.append(E.not_supported("spec.completionMode", mode, ["NonIndexed"]))
    causes += _validate_template_selector(spec)
    template = spec.get("template") or {}
    causes += validate_pod_spec(template.get("spec"), "spec.template.spec")
    rp = (template.get("spec") or {}).get("restartPolicy")
    if rp not in ("OnFailure", "Never"):
        causes.append(E.not_supported("spec.template.spec.restartPolicy", rp, ["OnFailure", "Never"]))
    return causes


VALIDATORS: dict[str, Callable[[Obj], list[Cause]]] = {
    "pods": validate_pod,
    "nodes": validate_node,
    "events": validate_event,
    "leases": validate_lease,
    "namespaces": validate_namespace,
    "replicasets": validate_replicaset,
    "deployments": validate_deployment,
    "jobs": validate_job,
}


# -------------------------------------------------------------------------------------- defaults
def _default_container(c: Obj) -> None:
    image = c.get("image") or ""
    if "imagePullPolicy" not in c:
        last = image.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last and "@" not in last else ""
        c["imagePullPolicy"] = "Always" if ("@" not in image and (not tag or tag == "latest")) else "IfNotPresent"
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    res = c.setdefault("resources", {})
    limits = res.get("limits") or {}
    if limits:
        requests = res.setdefault("requests", {})
        for k, v in limits.items():
            requests.setdefault(k, v)
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")
    for kind in PROBE_KINDS:
        default_probe(c.get(kind))


def default_pod_spec(spec: Obj) -> None:
    """Kubernetes' defaults for a PodSpec, applied in place."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", DEFAULT_SCHEDULER)
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("serviceAccountName", "default")
    for c in spec.get("containers") or []:
        _default_container(c)
    for c in spec.get("initContainers") or []:
        _default_container(c)
    # The DefaultTolerationSeconds admission plugin: tolerate not-ready/unreachable nodes for 300 s.
    tolerations = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == key and t.get("effect") in ("NoExecute", None, "") for t in tolerations) \
                and not any(not t.get("key") and t.get("operator") == "Exists" for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS})


def qos_class(spec: Obj) -> str:
    """Guaranteed, Burstable or BestEffort, as Kubernetes' `qos.GetPodQOS` computes status.qosClass: only cpu
    and memory count, zero quantities count as unset, and Guaranteed needs both limits on every container
    with the pod's summed requests equal to its summed limits."""
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    any_set = False
    for c in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
        res = (c.get("resources") if isinstance(c, dict) else None) or {}
        limited = set()
        for part, into in (("requests", requests), ("limits", limits)):
            for name, value in (res.get(part) or {}).items():
                if name not in ("cpu", "memory"):
                    continue
                try:
                    q = parse_quantity(value).value
                except QuantityError:
                    continue
                if q != 0:
                    any_set = True
                    into[name] = into.get(name, Fraction(0)) + q
                    if part == "limits":
                        limited.add(name)
        if limited != {"cpu", "memory"}:
            guaranteed = False
    if not any_set:
        return "BestEffort"
    if guaranteed and all(requests.get(k, limits[k]) == limits[k] for k in limits):
        return "Guaranteed"
    return "Burstable"


def default_pod(pod: Obj) -> None:
    spec = pod.setdefault("spec", {})
    default_pod_spec(spec)
    status = pod.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status["qosClass"] = qos_class(spec)


def canonical_quantities(res: Any) -> None:
    """Rewrite requests/limits into Kubernetes' canonical form ("0.5" -> "500m"), as a round trip does."""
    if not isinstance(res, dict):
        return
    for part in ("limits", "requests"):
        values = res.get(part)
        if isinstance(values, dict):
            for k, v in list(values.items()):
                try:
                    values[k] = parse_quantity(v).canonical()
                except QuantityError:
                    pass


def default_object(plural: str, obj: Obj) -> None:
    """Apply the defaults of `plural` to `obj` in place (before validation, as Kubernetes does)."""
    if plural == "pods":
        default_pod(obj)
        for c in (obj["spec"].get("containers") or []) + (obj["spec"].get("initContainers") or []):
            canonical_quantities(c.get("resources"))
    elif plural == "replicasets":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        template = spec.setdefault("template", {})
        tspec = template.setdefault("spec", {})
        default_pod_spec(tspec)
        tspec.pop("priority", None)
        sel = spec.get("selector")
        if not sel:
            labels = (template.get("metadata") or {}).get("labels") or {}
            if labels:
                spec["selector"] = {"matchLabels": dict(labels)}
        obj.setdefault("status", {"replicas": 0})
    elif plural == "deployments":
        default_deployment(obj)
    elif plural == "jobs":
        default_job(obj)
    elif plural == "nodes":
        obj.setdefault("spec", {})
        obj.setdefault("status", {})
    elif plural == "namespaces":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
        name = (obj.get("metadata") or {}).get("name")
        if name:
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name


def _default_template(spec: Obj) -> Obj:
    template: Obj = spec.setdefault("template", {})
    tspec = template.setdefault("spec", {})
    default_pod_spec(tspec)
    tspec.pop("priority", None)
    return template


def default_deployment(d: Obj) -> None:
    """apps/v1 SetDefaults_Deployment: 1 replica, RollingUpdate 25%/25%, 10 old ReplicaSets kept, a 600 s
    progress deadline."""
    spec = d.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    template = _default_template(spec)
    if not spec.get("selector"):
        labels = (template.get("metadata") or {}).get("labels") or {}
        if labels:
            spec["selector"] = {"matchLabels": dict(labels)}
    d.setdefault("status", {})


JOB_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
JOB_NAME_LABELS = ("job-name", "batch.kubernetes.io/job-name")


def default_job(job: Obj) -> None:
    """batch/v1 SetDefaults_Job and the Job strategy's generated selector: completions and parallelism 1
    when neither is set, backoffLimit 6, NonIndexed; unless `manualSelector`, the selector is
    `controller-uid: <uid>` and the template gets the controller-uid and job-name labels (needs
    metadata.uid and metadata.name)."""
    spec = job.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = _default_template(spec)
    meta = job.get("metadata") or {}
    uid, name = meta.get("uid"), meta.get("name")
    if not spec.get("manualSelector") and uid and name and not spec.get("selector"):
        spec["selector"] = {"matchLabels": {JOB_UID_LABELS[1]: uid}}
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        for key in JOB_UID_LABELS:
            labels[key] = uid
        for key in JOB_NAME_LABELS:
            labels[key] = name
    if not meta.get("labels") and (template.get("metadata") or {}).get("labels"):
        meta["labels"] = dict(template["metadata"]["labels"])  # SetDefaults_Job: the template's labels
    job.setdefault("status", {})
