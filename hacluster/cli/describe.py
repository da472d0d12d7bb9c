"""`hacluster describe`: kubectl's describers for pods, nodes, ReplicaSets and namespaces (and its generic
describer for anything else), rendered exactly as kubectl 1.20 renders them, events included.

`describe(client, res, namespace, name)` fetches what kubectl fetches (the object, its events, a node's
pods and lease, a ReplicaSet's pods) and returns the text. The layout comes from Go's tabwriter
(`hacluster.cli.kube.tabbed`): lines with tabs form column blocks, a line without one ends a block, the
events table is flushed on its own. Ages are computed here, at the time of the call, as kubectl does.

One file, longer than most: one describer per kind, as kubectl keeps them (describe.go), sharing the
section and table helpers; each describer is short and read on its own.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from hacluster.cli.kube import LAST_APPLIED, KubeClient, KubeError, TabWriter, collection_path, object_path
from hacluster.format.accessors import as_list, as_map, as_text
from hacluster.format.durations import human_duration, translate_timestamp_since
from hacluster.format.nodes import node_roles
from hacluster.format.selectors import format_label_selector, label_selector_string
from hacluster.model import resources
from hacluster.model.quantity import QuantityError, format_quantity, parse_quantity
from hacluster.model.resources import Resource
from hacluster.model.timestamps import parse_datetime
from hacluster.model.validation import qos_class

Obj = Mapping[str, Any]
MAX_ANNOTATION_LEN = 140


def _go_bool(v: object) -> str:
    return "true" if v is True else "false"


def rfc1123z(ts: object) -> str:
    """Go's `time.RFC1123Z` in the local zone ("Mon, 02 Jan 2006 15:04:05 -0700"), as kubectl prints a
    `metav1.Time` (decoded into local time); Go's zero time when unset."""
    if not isinstance(ts, str) or not ts:
        return "Mon, 01 Jan 0001 00:00:00 +0000"
    try:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return ts
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone().strftime("%a, %d %b %Y %H:%M:%S %z")


class _Out:
    """kubectl's PrefixWriter over a tabwriter: `write(level, text)` indents by two spaces per level."""

    def __init__(self) -> None:
        self.tw = TabWriter(minwidth=0, padding=2)
        self.parts: list[str] = []

    def write(self, level: int, text: str) -> None:
        self.tw.write("  " * level + text)

    def flush(self) -> None:
        self.parts.append(self.tw.flush())

    def text(self) -> str:
        self.flush()
        return "".join(self.parts)


# --------------------------------------------------------------------------------------- shared bits
def _rows(w: _Out, title: str, rows: list[str], initial_indent: str = "") -> None:
    """`Title:\trow` then one `\trow` line per further row, or `<none>` (kubectl's multi-line fields)."""
    w.write(0, f"{initial_indent}{title}:\t")
    if not rows:
        w.write(0, "<none>\n")
        return
    for i, row in enumerate(rows):
        if i:
            w.write(0, f"{initial_indent}\t")
        w.write(0, row + "\n")


def _labels(w: _Out, title: str, labels: object, initial_indent: str = "") -> None:
    items = as_map(labels)
    _rows(w, title, [f"{key}={as_text(items[key])}" for key in sorted(items)], initial_indent)


def _annotations(w: _Out, title: str, annotations: object) -> None:
    w.write(0, f"{title}:\t")
    items = {k: v for k, v in as_map(annotations).items() if k != LAST_APPLIED}
    if not items:
        w.write(0, "<none>\n")
        return
    for i, key in enumerate(sorted(items)):
        if i:
            w.write(0, "\t")
        value = as_text(items[key]).removesuffix("\n")
        if len(value) + len(key) + 2 > MAX_ANNOTATION_LEN or "\n" in value:
            w.write(0, f"{key}:\n")
            for line in value.split("\n"):
                short = line if len(line) <= MAX_ANNOTATION_LEN - 2 else line[:MAX_ANNOTATION_LEN - 2] + "..."
                w.write(0, f"\t  {short}\n")
        else:
            w.write(0, f"{key}: {value}\n")


def _tolerations(w: _Out, title: str, tolerations: object) -> None:
    rows = []
    for t in sorted((as_map(t) for t in as_list(tolerations)), key=lambda t: as_text(t.get("key"))):
        text = as_text(t.get("key"))
        if t.get("value"):
            text += f"={as_text(t.get('value'))}"
        if t.get("effect"):
            text += f":{as_text(t.get('effect'))}"
        if t.get("operator") == "Exists" and not t.get("value"):
            text += " op=Exists" if t.get("key") or t.get("effect") else "op=Exists"
        if t.get("tolerationSeconds") is not None:
            text += f" for {t.get('tolerationSeconds')}s"
        rows.append(text)
    _rows(w, title, rows)


def _taints(w: _Out, title: str, taints: object) -> None:
    rows = []
    for t in sorted((as_map(t) for t in as_list(taints)),
                    key=lambda t: f"{as_text(t.get('effect'))},{as_text(t.get('key'))}"):
        value = f"={as_text(t.get('value'))}" if t.get("value") else ""
        rows.append(f"{as_text(t.get('key'))}{value}:{as_text(t.get('effect'))}")
    _rows(w, title, rows)


def _quantity(v: object) -> str:
    try:
        return parse_quantity(v).canonical()
    except QuantityError:
        return as_text(v)


def _controller(obj: Obj) -> str:
    for ref in as_list(as_map(obj.get("metadata")).get("ownerReferences")):
        ref = as_map(ref)
        if ref.get("controller") is True:
            return f"{as_text(ref.get('kind'))}/{as_text(ref.get('name'))}"
    return ""


def _events(w: _Out, events: list[Obj] | None, now: datetime) -> None:
    if events is None:
        return
    if not events:
        w.write(0, "Events:\t<none>\n")
        return
    w.flush()
    ordered = sorted(events, key=lambda e: as_text(e.get("lastTimestamp")) or "")
    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
    w.write(1, "----\t------\t----\t----\t-------\n")
    for e in ordered:
        first = translate_timestamp_since(as_text(e.get("firstTimestamp")) or None, now)
        if not e.get("firstTimestamp"):
            first = translate_timestamp_since(as_text(e.get("eventTime")) or None, now)
        series = e.get("series")
        count = e.get("count") or 0
        if isinstance(series, Mapping):
            interval = (f"{translate_timestamp_since(as_text(series.get('lastObservedTime')) or None, now)} "
                        f"(x{series.get('count', 0)} over {first})")
        elif isinstance(count, int) and count > 1:
            interval = (f"{translate_timestamp_since(as_text(e.get('lastTimestamp')) or None, now)} "
                        f"(x{count} over {first})")
        else:
            interval = first
        source = as_text(as_map(e.get("source")).get("component")) or as_text(e.get("reportingComponent"))
        w.write(1, f"{as_text(e.get('type'))}\t{as_text(e.get('reason'))}\t{interval}\t{source}\t"
                   f"{as_text(e.get('message')).strip()}\n")


def search_events(client: KubeClient, namespace: str, name: str, uid: str, kind: str = "") -> list[Obj]:
    """Events about one object, found the way kubectl finds them (field selector on involvedObject)."""
    terms = [f"involvedObject.name={name}", f"involvedObject.namespace={namespace}"]
    if kind:
        terms.append(f"involvedObject.kind={kind}")
    if uid:
        terms.append(f"involvedObject.uid={uid}")
    events_res = resources.EVENTS
    data = client.get_json(collection_path(events_res, namespace or None), query={"fieldSelector": ",".join(terms)})
    return [as_map(e) for e in as_list(as_map(data).get("items"))]


# --------------------------------------------------------------------------------------------- pods
def _probe(p: Obj) -> str:
    attrs = (f"delay={p.get('initialDelaySeconds', 0)}s timeout={p.get('timeoutSeconds', 0)}s "
             f"period={p.get('periodSeconds', 0)}s #success={p.get('successThreshold', 0)} "
             f"#failure={p.get('failureThreshold', 0)}")
    if isinstance(p.get("exec"), Mapping):
        return f"exec [{' '.join(as_text(c) for c in as_list(as_map(p['exec']).get('command')))}] {attrs}"
    if isinstance(p.get("httpGet"), Mapping):
        h = as_map(p["httpGet"])
        scheme = as_text(h.get("scheme")).lower()
        port = as_text(h.get("port"))
        host = f"{as_text(h.get('host'))}:{port}" if port else as_text(h.get("host"))
        return f"http-get {scheme + '://' if scheme else '//'}{host}{as_text(h.get('path'))} {attrs}"
    if isinstance(p.get("tcpSocket"), Mapping):
        t = as_map(p["tcpSocket"])
        return f"tcp-socket {as_text(t.get('host'))}:{as_text(t.get('port'))} {attrs}"
    if isinstance(p.get("grpc"), Mapping):
        g = as_map(p["grpc"])
        return f"grpc <pod>:{g.get('port', 0)} {as_text(g.get('service'))} {attrs}"
    return f"unknown {attrs}"


_FIELD_REF = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


def _field_ref(pod: Obj, path: str) -> str:
    """kubectl 1.20's `fieldpath.ExtractFieldPathAsString`: only metadata fields resolve; spec.* and status.*
    print empty."""
    meta = as_map(pod.get("metadata"))
    m = _FIELD_REF.match(path)
    if m:
        return as_text(as_map(meta.get(m.group(1))).get(m.group(2)))
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return as_text(meta.get(path.split(".", 1)[1]))
    return ""


def _containers(w: _Out, label: str, containers: list[Any], statuses: list[Any], pod: Obj | None,
                space: str = "") -> None:
    by_name = {as_text(as_map(s).get("name")): as_map(s) for s in statuses}
    w.write(0, f"{space}{label}:{' <none>' if not containers else ''}\n")
    for c in (as_map(c) for c in containers):
        status = by_name.get(as_text(c.get("name")))
        w.write(1, f"{' ' if space else ''}{as_text(c.get('name'))}:\n")
        if status is not None:
            w.write(2, f"Container ID:\t{as_text(status.get('containerID'))}\n")
        w.write(2, f"Image:\t{as_text(c.get('image'))}\n")
        if status is not None:
            w.write(2, f"Image ID:\t{as_text(status.get('imageID'))}\n")
        ports = [as_map(p) for p in as_list(c.get("ports"))]
        cp, hp = _port_list(ports, "containerPort"), _port_list(ports, "hostPort")
        w.write(2, f"Ports:\t{cp}\n" if "," in cp else f"Port:\t{cp or '<none>'}\n")
        w.write(2, f"Host Ports:\t{hp}\n" if "," in hp else f"Host Port:\t{hp or '<none>'}\n")
        for title, field in (("Command", "command"), ("Args", "args")):
            if as_list(c.get(field)):
                w.write(2, f"{title}:\n")
                for part in as_list(c.get(field)):
                    for line in as_text(part).split("\n"):
                        w.write(3, f"{line}\n")
        if status is not None:
            _state(w, "State", as_map(status.get("state")))
            if isinstance(as_map(status.get("lastState")).get("terminated"), Mapping):
                _state(w, "Last State", as_map(status.get("lastState")))
            w.write(2, f"Ready:\t{'True' if status.get('ready') is True else 'False'}\n")
            w.write(2, f"Restart Count:\t{status.get('restartCount', 0)}\n")
        res = as_map(c.get("resources"))
        for title, part in (("Limits", "limits"), ("Requests", "requests")):
            values = as_map(res.get(part))
            if values:
                w.write(2, f"{title}:\n")
            for name in sorted(values):
                w.write(3, f"{name}:\t{_quantity(values[name])}\n")
        for title, field in (("Liveness", "livenessProbe"), ("Readiness", "readinessProbe"),
                             ("Startup", "startupProbe")):
            if isinstance(c.get(field), Mapping):
                w.write(2, f"{title}:\t{_probe(as_map(c.get(field)))}\n")
        env_from = [as_map(e) for e in as_list(c.get("envFrom"))]
        if env_from:
            w.write(2, "Environment Variables from:\n")
            for e in env_from:
                ref = as_map(e.get("configMapRef")) or as_map(e.get("secretRef"))
                source = "ConfigMap" if e.get("configMapRef") else "Secret"
                optional = "true" if ref.get("optional") is True else "false"
                prefix = f" with prefix '{as_text(e.get('prefix'))}'" if e.get("prefix") else ""
                w.write(3, f"{as_text(ref.get('name'))}\t{source}{prefix}\tOptional: {optional}\n")
        env = [as_map(e) for e in as_list(c.get("env"))]
        w.write(2, f"Environment:{'' if env else chr(9) + '<none>'}\n")
        for e in env:
            vf = as_map(e.get("valueFrom"))
            if not vf:
                for i, line in enumerate(as_text(e.get("value")).split("\n")):
                    w.write(3, f"{as_text(e.get('name'))}:\t{line}\n" if i == 0 else f"\t{line}\n")
            elif vf.get("fieldRef"):
                fr = as_map(vf.get("fieldRef"))
                value = _field_ref(pod, as_text(fr.get("fieldPath"))) if pod is not None else ""
                w.write(3, f"{as_text(e.get('name'))}:\t{value} "
                           f"({as_text(fr.get('apiVersion'))}:{as_text(fr.get('fieldPath'))})\n")
            elif vf.get("resourceFieldRef"):
                w.write(3, f"{as_text(e.get('name'))}:\t ({as_text(as_map(vf['resourceFieldRef']).get('resource'))})\n")
            elif vf.get("secretKeyRef"):
                r = as_map(vf["secretKeyRef"])
                w.write(3, f"{as_text(e.get('name'))}:\t<set to the key '{as_text(r.get('key'))}' in secret "
                           f"'{as_text(r.get('name'))}'>\tOptional: {_go_bool(r.get('optional'))}\n")
            elif vf.get("configMapKeyRef"):
                r = as_map(vf["configMapKeyRef"])
                w.write(3, f"{as_text(e.get('name'))}:\t<set to the key '{as_text(r.get('key'))}' of config map "
                           f"'{as_text(r.get('name'))}'>\tOptional: {_go_bool(r.get('optional'))}\n")
        mounts = sorted((as_map(v) for v in as_list(c.get("volumeMounts"))), key=lambda v: as_text(v.get("mountPath")))
        w.write(2, f"Mounts:{'' if mounts else chr(9) + '<none>'}\n")
        for v in mounts:
            flags = ["ro" if v.get("readOnly") is True else "rw"]
            if v.get("subPath"):
                flags.append(f'path="{as_text(v.get("subPath"))}"')
            w.write(3, f"{as_text(v.get('mountPath'))} from {as_text(v.get('name'))} ({','.join(flags)})\n")


def _port_list(ports: list[Mapping[str, Any]], field: str) -> str:
    """"80/TCP, 53/UDP" (kubectl 1.20 leaves the port names out)."""
    return ", ".join(f"{p.get(field, 0)}/{as_text(p.get('protocol')) or 'TCP'}" for p in ports)


def _state(w: _Out, title: str, state: Mapping[str, Any]) -> None:
    if isinstance(state.get("running"), Mapping):
        w.write(2, f"{title}:\tRunning\n")
        w.write(3, f"Started:\t{rfc1123z(as_map(state['running']).get('startedAt'))}\n")
    elif isinstance(state.get("waiting"), Mapping):
        w.write(2, f"{title}:\tWaiting\n")
        if as_map(state["waiting"]).get("reason"):
            w.write(3, f"Reason:\t{as_text(as_map(state['waiting']).get('reason'))}\n")
    elif isinstance(state.get("terminated"), Mapping):
        t = as_map(state["terminated"])
        w.write(2, f"{title}:\tTerminated\n")
        if t.get("reason"):
            w.write(3, f"Reason:\t{as_text(t.get('reason'))}\n")
        if t.get("message"):
            w.write(3, f"Message:\t{as_text(t.get('message'))}\n")
        w.write(3, f"Exit Code:\t{t.get('exitCode', 0)}\n")
        if (t.get("signal") or 0) > 0:
            w.write(3, f"Signal:\t{t.get('signal')}\n")
        w.write(3, f"Started:\t{rfc1123z(t.get('startedAt'))}\n")
        w.write(3, f"Finished:\t{rfc1123z(t.get('finishedAt'))}\n")
    else:
        w.write(2, f"{title}:\tWaiting\n")


def _volumes(w: _Out, volumes: list[Any], space: str = "") -> None:
    if not volumes:
        w.write(0, f"{space}Volumes:\t<none>\n")
        return
    w.write(0, f"{space}Volumes:\n")
    for v in (as_map(v) for v in volumes):
        w.write(1, f"{' ' if space else ''}{as_text(v.get('name'))}:\n")
        if isinstance(v.get("emptyDir"), Mapping):
            e = as_map(v["emptyDir"])
            limit = _quantity(e["sizeLimit"]) if e.get("sizeLimit") else "<unset>"
            w.write(2, "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n"
                       f"    Medium:\t{as_text(e.get('medium'))}\n    SizeLimit:\t{limit}\n")
        elif isinstance(v.get("hostPath"), Mapping):
            h = as_map(v["hostPath"])
            w.write(2, f"Type:\tHostPath (bare host directory volume)\n    Path:\t{as_text(h.get('path'))}\n"
                       f"    HostPathType:\t{as_text(h.get('type')) or '<none>'}\n")
        elif isinstance(v.get("configMap"), Mapping):
            c = as_map(v["configMap"])
            w.write(2, f"Type:\tConfigMap (a volume populated by a ConfigMap)\n    Name:\t{as_text(c.get('name'))}\n"
                       f"    Optional:\t{_go_bool(c.get('optional'))}\n")
        elif isinstance(v.get("secret"), Mapping):
            c = as_map(v["secret"])
            w.write(2, "Type:\tSecret (a volume populated by a Secret)\n"
                       f"    SecretName:\t{as_text(c.get('secretName'))}\n"
                       f"    Optional:\t{_go_bool(c.get('optional'))}\n")
        else:
            w.write(2, "<unknown>\n")


def describe_pod(pod: Obj, events: list[Obj] | None, now: datetime) -> str:
    meta, spec, status = as_map(pod.get("metadata")), as_map(pod.get("spec")), as_map(pod.get("status"))
    w = _Out()
    w.write(0, f"Name:\t{as_text(meta.get('name'))}\n")
    w.write(0, f"Namespace:\t{as_text(meta.get('namespace'))}\n")
    if spec.get("priority") is not None:
        w.write(0, f"Priority:\t{spec.get('priority')}\n")
    if spec.get("priorityClassName"):
        w.write(0, f"Priority Class Name:\t{as_text(spec.get('priorityClassName'))}\n")
    node = as_text(spec.get("nodeName"))
    w.write(0, f"Node:\t{node + '/' + as_text(status.get('hostIP')) if node else '<none>'}\n")
    if status.get("startTime"):
        w.write(0, f"Start Time:\t{rfc1123z(status.get('startTime'))}\n")
    _labels(w, "Labels", meta.get("labels"))
    _annotations(w, "Annotations", meta.get("annotations"))
    if meta.get("deletionTimestamp"):
        lasts = translate_timestamp_since(as_text(meta.get("deletionTimestamp")), now)
        w.write(0, f"Status:\tTerminating (lasts {lasts})\n")
        w.write(0, f"Termination Grace Period:\t{meta.get('deletionGracePeriodSeconds', 0)}s\n")
    else:
        w.write(0, f"Status:\t{as_text(status.get('phase'))}\n")
    if status.get("reason"):
        w.write(0, f"Reason:\t{as_text(status.get('reason'))}\n")
    if status.get("message"):
        w.write(0, f"Message:\t{as_text(status.get('message'))}\n")
    w.write(0, f"IP:\t{as_text(status.get('podIP'))}\n")
    ips = [as_map(i) for i in as_list(status.get("podIPs"))]
    if not ips:
        w.write(0, "IPs:\t<none>\n")
    else:
        w.write(0, "IPs:\n")
        for ip in ips:
            w.write(1, f"IP:\t{as_text(ip.get('ip'))}\n")
    if _controller(pod):
        w.write(0, f"Controlled By:\t{_controller(pod)}\n")
    if status.get("nominatedNodeName"):
        w.write(0, f"NominatedNodeName:\t{as_text(status.get('nominatedNodeName'))}\n")
    if as_list(spec.get("initContainers")):
        _containers(w, "Init Containers", as_list(spec.get("initContainers")),
                    as_list(status.get("initContainerStatuses")), pod)
    _containers(w, "Containers", as_list(spec.get("containers")), as_list(status.get("containerStatuses")), pod)
    gates = [as_map(g) for g in as_list(spec.get("readinessGates"))]
    conditions = [as_map(c) for c in as_list(status.get("conditions"))]
    if gates:
        w.write(0, "Readiness Gates:\n  Type\tStatus\n")
        for g in gates:
            found = next((c for c in conditions if c.get("type") == g.get("conditionType")), None)
            w.write(1, f"{as_text(g.get('conditionType'))} \t{as_text(found.get('status')) if found else '<none>'} \n")
    if conditions:
        w.write(0, "Conditions:\n  Type\tStatus\n")
        for c in conditions:
            w.write(1, f"{as_text(c.get('type'))} \t{as_text(c.get('status'))} \n")
    _volumes(w, as_list(spec.get("volumes")))
    w.write(0, f"QoS Class:\t{as_text(status.get('qosClass')) or qos_class(dict(as_map(pod.get('spec'))))}\n")
    _labels(w, "Node-Selectors", spec.get("nodeSelector"))
    _tolerations(w, "Tolerations", spec.get("tolerations"))
    _events(w, events, now)
    return w.text()


# --------------------------------------------------------------------------------------------- nodes
def _sum(values: list[object]) -> tuple[Fraction, str]:
    total, notation = Fraction(0), ""
    for v in values:
        try:
            q = parse_quantity(v)
        except QuantityError:
            continue
        total += q.value
        notation = notation or q.notation
    return total, notation or "decimal"


def _pod_requests_limits(pod: Obj) -> tuple[dict[str, tuple[Fraction, str]], dict[str, tuple[Fraction, str]]]:
    """`PodRequestsAndLimits`: the containers' sum, at least any one init container's value, plus overhead."""
    spec = as_map(pod.get("spec"))
    out: list[dict[str, tuple[Fraction, str]]] = []
    for part in ("requests", "limits"):
        acc: dict[str, tuple[Fraction, str]] = {}
        for c in as_list(spec.get("containers")):
            for name, value in as_map(as_map(as_map(c).get("resources")).get(part)).items():
                have = acc.get(name, (Fraction(0), ""))
                add, notation = _sum([value])
                acc[name] = (have[0] + add, have[1] or notation)
        for c in as_list(spec.get("initContainers")):
            for name, value in as_map(as_map(as_map(c).get("resources")).get(part)).items():
                v, notation = _sum([value])
                if v > acc.get(name, (Fraction(0), ""))[0]:
                    acc[name] = (v, notation)
        for name, value in as_map(spec.get("overhead")).items():
            if name in acc:
                add, _ = _sum([value])
                acc[name] = (acc[name][0] + add, acc[name][1])
        out.append(acc)
    return out[0], out[1]


def _fmt(q: tuple[Fraction, str] | None) -> str:
    return "0" if q is None else format_quantity(q[0], q[1])


def _percent(part: tuple[Fraction, str] | None, whole: object, millis: bool) -> int:
    """kubectl's `int64(float64(used) / float64(allocatable) * 100)` on milli-values (CPU) or whole values."""
    try:
        total = parse_quantity(whole).value
    except QuantityError:
        return 0
    if part is None:
        return 0
    scale = 1000 if millis else 1
    used_units, total_units = math.ceil(part[0] * scale), math.ceil(total * scale)
    if total_units == 0:
        return 0
    return int(float(used_units) / float(total_units) * 100)


def describe_node(node: Obj, pods: list[Obj] | None, lease: Obj | None, events: list[Obj] | None,
                  now: datetime) -> str:
    meta, spec, status = as_map(node.get("metadata")), as_map(node.get("spec")), as_map(node.get("status"))
    w = _Out()
    w.write(0, f"Name:\t{as_text(meta.get('name'))}\n")
    w.write(0, f"Roles:\t{node_roles(node)}\n")
    _labels(w, "Labels", meta.get("labels"))
    _annotations(w, "Annotations", meta.get("annotations"))
    w.write(0, f"CreationTimestamp:\t{rfc1123z(meta.get('creationTimestamp'))}\n")
    _taints(w, "Taints", spec.get("taints"))
    w.write(0, f"Unschedulable:\t{_go_bool(spec.get('unschedulable'))}\n")
    lspec = as_map(as_map(lease).get("spec"))
    w.write(0, "Lease:\n")
    w.write(1, f"HolderIdentity:\t{as_text(lspec.get('holderIdentity')) or '<unset>'}\n")
    w.write(1, f"AcquireTime:\t{rfc1123z(lspec['acquireTime']) if lspec.get('acquireTime') else '<unset>'}\n")
    w.write(1, f"RenewTime:\t{rfc1123z(lspec['renewTime']) if lspec.get('renewTime') else '<unset>'}\n")
    conditions = [as_map(c) for c in as_list(status.get("conditions"))]
    if conditions:
        w.write(0, "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n")
        w.write(1, "----\t------\t-----------------\t------------------\t------\t-------\n")
        for c in conditions:
            w.write(1, f"{as_text(c.get('type'))} \t{as_text(c.get('status'))} \t"
                       f"{rfc1123z(c.get('lastHeartbeatTime'))} \t{rfc1123z(c.get('lastTransitionTime'))} \t"
                       f"{as_text(c.get('reason'))} \t{as_text(c.get('message'))}\n")
    w.write(0, "Addresses:\n")
    for a in (as_map(a) for a in as_list(status.get("addresses"))):
        w.write(1, f"{as_text(a.get('type'))}:\t{as_text(a.get('address'))}\n")
    for title in ("capacity", "allocatable"):
        values = as_map(status.get(title))
        if values:
            w.write(0, f"{title.capitalize()}:\n")
            for name in sorted(values):
                w.write(0, f"  {name}:\t{_quantity(values[name])}\n")
    info = as_map(status.get("nodeInfo"))
    w.write(0, "System Info:\n")
    for label, key in (("Machine ID", "machineID"), ("System UUID", "systemUUID"), ("Boot ID", "bootID"),
                       ("Kernel Version", "kernelVersion"), ("OS Image", "osImage"),
                       ("Operating System", "operatingSystem"), ("Architecture", "architecture"),
                       ("Container Runtime Version", "containerRuntimeVersion"),
                       ("Kubelet Version", "kubeletVersion"), ("Kube-Proxy Version", "kubeProxyVersion")):
        w.write(0, f"  {label}:\t{as_text(info.get(key))}\n")
    if spec.get("podCIDR"):
        w.write(0, f"PodCIDR:\t{as_text(spec.get('podCIDR'))}\n")
    if as_list(spec.get("podCIDRs")):
        w.write(0, f"PodCIDRs:\t{','.join(as_text(c) for c in as_list(spec.get('podCIDRs')))}\n")
    if spec.get("providerID"):
        w.write(0, f"ProviderID:\t{as_text(spec.get('providerID'))}\n")
    if pods is None:
        w.write(0, "Pods:\tnot authorized")
    else:
        _node_resources(w, node, pods, now)
    _events(w, events, now)
    return w.text()


def _node_resources(w: _Out, node: Obj, pods: list[Obj], now: datetime) -> None:
    status = as_map(node.get("status"))
    alloc = as_map(status.get("allocatable")) or as_map(status.get("capacity"))
    w.write(0, f"Non-terminated Pods:\t({len(pods)} in total)\n")
    w.write(1, "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAGE\n")
    w.write(1, "---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n")
    total_req: dict[str, tuple[Fraction, str]] = {}
    total_lim: dict[str, tuple[Fraction, str]] = {}
    for pod in pods:
        req, lim = _pod_requests_limits(pod)
        for src, into in ((req, total_req), (lim, total_lim)):
            for name, (v, notation) in src.items():
                have = into.get(name, (Fraction(0), ""))
                into[name] = (have[0] + v, have[1] or notation)
        meta = as_map(pod.get("metadata"))
        cells = [f"{_fmt(req.get('cpu'))} ({_percent(req.get('cpu'), alloc.get('cpu'), True)}%)",
                 f"{_fmt(lim.get('cpu'))} ({_percent(lim.get('cpu'), alloc.get('cpu'), True)}%)",
                 f"{_fmt(req.get('memory'))} ({_percent(req.get('memory'), alloc.get('memory'), False)}%)",
                 f"{_fmt(lim.get('memory'))} ({_percent(lim.get('memory'), alloc.get('memory'), False)}%)"]
        w.write(1, f"{as_text(meta.get('namespace'))}\t{as_text(meta.get('name'))}\t\t" + "\t".join(cells) +
                f"\t{translate_timestamp_since(as_text(meta.get('creationTimestamp')) or None, now)}\n")
    w.write(0, "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n")
    w.write(1, "Resource\tRequests\tLimits\n")
    w.write(1, "--------\t--------\t------\n")
    hugepages = [(n, False) for n in sorted(alloc) if n.startswith("hugepages-")]
    for name, millis in [("cpu", True), ("memory", False), ("ephemeral-storage", False), *hugepages]:
        w.write(1, f"{name}\t{_fmt(total_req.get(name))} ({_percent(total_req.get(name), alloc.get(name), millis)}%)"
                   f"\t{_fmt(total_lim.get(name))} ({_percent(total_lim.get(name), alloc.get(name), millis)}%)\n")
    standard = {"cpu", "memory", "ephemeral-storage", "pods"}
    for name in sorted(n for n in alloc if n not in standard and not n.startswith("hugepages-")):
        w.write(1, f"{name}\t{_fmt(total_req.get(name))}\t{_fmt(total_lim.get(name))}\n")


# ----------------------------------------------------------------------------------------- ReplicaSets
def _selector(w: _Out, spec: Mapping[str, Any]) -> None:
    selector = spec.get("selector")
    w.write(0, f"Selector:\t{format_label_selector(as_map(selector) if selector is not None else None)}\n")


def _owned_header(w: _Out, obj: Obj) -> None:
    """The opening lines of kubectl's ReplicaSet and Job describers: name, namespace, selector, labels,
    annotations, and the owner controlling the object."""
    meta, spec = as_map(obj.get("metadata")), as_map(obj.get("spec"))
    w.write(0, f"Name:\t{as_text(meta.get('name'))}\n")
    w.write(0, f"Namespace:\t{as_text(meta.get('namespace'))}\n")
    _selector(w, spec)
    _labels(w, "Labels", meta.get("labels"))
    _annotations(w, "Annotations", meta.get("annotations"))
    if _controller(obj):
        w.write(0, f"Controlled By:\t{_controller(obj)}\n")


def _conditions(w: _Out, status: Mapping[str, Any]) -> None:
    """The Conditions table of kubectl's ReplicaSet and Deployment describers (nothing without conditions)."""
    conditions = [as_map(c) for c in as_list(status.get("conditions"))]
    if conditions:
        w.write(0, "Conditions:\n  Type\tStatus\tReason\n")
        w.write(1, "----\t------\t------\n")
        for c in conditions:
            w.write(1, f"{as_text(c.get('type'))} \t{as_text(c.get('status'))}\t{as_text(c.get('reason'))}\n")


def _pod_template(w: _Out, template: Obj) -> None:
    meta, spec = as_map(template.get("metadata")), as_map(template.get("spec"))
    w.write(0, "Pod Template:\n")
    _labels(w, "  Labels", meta.get("labels"))
    if as_map(meta.get("annotations")):
        _annotations(w, "  Annotations", meta.get("annotations"))
    if spec.get("serviceAccountName"):
        w.write(1, f"Service Account:\t{as_text(spec.get('serviceAccountName'))}\n")
    if as_list(spec.get("initContainers")):
        _containers(w, "Init Containers", as_list(spec.get("initContainers")), [], None, "  ")
    _containers(w, "Containers", as_list(spec.get("containers")), [], None, "  ")
    _volumes(w, as_list(spec.get("volumes")), "  ")
    if spec.get("priorityClassName"):
        w.write(1, f"Priority Class Name:\t{as_text(spec.get('priorityClassName'))}\n")


def describe_replicaset(rs: Obj, pods: list[Obj] | None, events: list[Obj] | None, now: datetime) -> str:
    spec, status = as_map(rs.get("spec")), as_map(rs.get("status"))
    w = _Out()
    _owned_header(w, rs)
    w.write(0, f"Replicas:\t{status.get('replicas', 0)} current / {spec.get('replicas', 1)} desired\n")
    w.write(0, "Pods Status:\t")
    if pods is None:
        w.write(0, "error in fetching pods\n")
    else:
        phases = [as_text(as_map(p.get("status")).get("phase")) for p in pods]
        w.write(0, f"{phases.count('Running')} Running / {phases.count('Pending')} Waiting / "
                   f"{phases.count('Succeeded')} Succeeded / {phases.count('Failed')} Failed\n")
    _pod_template(w, as_map(spec.get("template")))
    _conditions(w, status)
    _events(w, events, now)
    return w.text()


# ------------------------------------------------------------------------------- Deployments and Jobs
def _replica_sets_text(sets: list[Obj]) -> str:
    """kubectl's printReplicaSetsByLabels: "web-5c54567945 (5/5 replicas created), …" or <none>."""
    text = ", ".join(f"{as_text(as_map(rs.get('metadata')).get('name'))} "
                     f"({as_map(rs.get('status')).get('replicas', 0)}/"
                     f"{as_map(rs.get('spec')).get('replicas', 1)} replicas created)" for rs in sets)
    return text or "<none>"


def describe_deployment(d: Obj, old_sets: list[Obj], new_set: Obj | None, events: list[Obj] | None,
                        now: datetime) -> str:
    """kubectl's DeploymentDescriber; `old_sets` are the old ReplicaSets that still want pods."""
    meta, spec, status = as_map(d.get("metadata")), as_map(d.get("spec")), as_map(d.get("status"))
    strategy = as_map(spec.get("strategy"))
    w = _Out()
    w.write(0, f"Name:\t{as_text(meta.get('name'))}\n")
    w.write(0, f"Namespace:\t{as_text(meta.get('namespace'))}\n")
    w.write(0, f"CreationTimestamp:\t{rfc1123z(meta.get('creationTimestamp'))}\n")
    _labels(w, "Labels", meta.get("labels"))
    _annotations(w, "Annotations", meta.get("annotations"))
    _selector(w, spec)
    w.write(0, f"Replicas:\t{spec.get('replicas', 1)} desired | {status.get('updatedReplicas', 0)} updated | "
               f"{status.get('replicas', 0)} total | {status.get('availableReplicas', 0)} available | "
               f"{status.get('unavailableReplicas', 0)} unavailable\n")
    w.write(0, f"StrategyType:\t{as_text(strategy.get('type'))}\n")
    w.write(0, f"MinReadySeconds:\t{spec.get('minReadySeconds', 0)}\n")
    rolling = strategy.get("rollingUpdate")
    if isinstance(rolling, Mapping):
        w.write(0, f"RollingUpdateStrategy:\t{as_text(rolling.get('maxUnavailable'))} max unavailable, "
                   f"{as_text(rolling.get('maxSurge'))} max surge\n")
    _pod_template(w, as_map(spec.get("template")))
    _conditions(w, status)
    if old_sets or new_set is not None:
        w.write(0, f"OldReplicaSets:\t{_replica_sets_text(old_sets)}\n")
        w.write(0, f"NewReplicaSet:\t{_replica_sets_text([new_set] if new_set is not None else [])}\n")
    _events(w, events, now)
    return w.text()


def describe_job(job: Obj, events: list[Obj] | None, now: datetime) -> str:
    """kubectl's JobDescriber."""
    spec, status = as_map(job.get("spec")), as_map(job.get("status"))
    w = _Out()
    _owned_header(w, job)
    if spec.get("parallelism") is not None:
        w.write(0, f"Parallelism:\t{spec.get('parallelism')}\n")
    w.write(0, f"Completions:\t{spec['completions'] if spec.get('completions') is not None else '<unset>'}\n")
    if spec.get("completionMode") is not None:
        w.write(0, f"Completion Mode:\t{as_text(spec.get('completionMode'))}\n")
    if spec.get("suspend") is not None:
        w.write(0, f"Suspend:\t{_go_bool(spec.get('suspend'))}\n")
    if spec.get("backoffLimit") is not None:
        w.write(0, f"Backoff Limit:\t{spec.get('backoffLimit')}\n")
    if spec.get("ttlSecondsAfterFinished") is not None:
        w.write(0, f"TTL Seconds After Finished:\t{spec.get('ttlSecondsAfterFinished')}\n")
    if status.get("startTime"):
        w.write(0, f"Start Time:\t{rfc1123z(status.get('startTime'))}\n")
    if status.get("completionTime"):
        w.write(0, f"Completed At:\t{rfc1123z(status.get('completionTime'))}\n")
    start, end = parse_datetime(status.get("startTime")), parse_datetime(status.get("completionTime"))
    if start is not None and end is not None:
        w.write(0, f"Duration:\t{human_duration((end - start).total_seconds())}\n")
    if spec.get("activeDeadlineSeconds") is not None:
        w.write(0, f"Active Deadline Seconds:\t{spec.get('activeDeadlineSeconds')}s\n")
    counts = f"{status.get('active', 0)} Active"
    if status.get("ready") is not None:
        counts += f" ({status.get('ready')} Ready)"
    w.write(0, f"Pods Statuses:\t{counts} / {status.get('succeeded', 0)} Succeeded / {status.get('failed', 0)} "
               "Failed\n")
    _pod_template(w, as_map(spec.get("template")))
    _events(w, events, now)
    return w.text()


def _template_without_hash(template: object) -> Obj:
    t = copy.deepcopy(dict(as_map(template)))
    meta = dict(as_map(t.get("metadata")))
    labels = {k: v for k, v in as_map(meta.get("labels")).items() if k != "pod-template-hash"}
    if labels:
        meta["labels"] = labels
    else:
        meta.pop("labels", None)
    if meta:
        t["metadata"] = meta
    else:
        t.pop("metadata", None)
    return t


# ------------------------------------------------------------------------------------ other resources
def describe_namespace(ns: Obj) -> str:
    meta = as_map(ns.get("metadata"))
    w = _Out()
    w.write(0, f"Name:\t{as_text(meta.get('name'))}\n")
    _labels(w, "Labels", meta.get("labels"))
    _annotations(w, "Annotations", meta.get("annotations"))
    w.write(0, f"Status:\t{as_text(as_map(ns.get('status')).get('phase'))}\n")
    # kubectl adds quota and limit-range sections when the server serves those resources; hacluster does not.
    return w.text()


_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def _smart_label(field: str) -> str:
    if re.search(r"[^A-Za-z-]", field):
        return field
    words = []
    for part in _CAMEL.findall(field) or [field]:
        if part.upper() in ("API", "URL", "UID", "GUID"):
            words.append(part.upper())
        elif part.lower() == part:
            words.append(part.capitalize())
        else:
            words.append(part)
    return " ".join(words)


def _unstructured(w: _Out, level: int, content: Mapping[str, Any], prefix: str, skip: set[str]) -> None:
    for field in sorted(content):
        value = content[field]
        path = f"{prefix}.{field}"
        if path in skip:
            continue
        if isinstance(value, Mapping):
            w.write(level, f"{_smart_label(field)}:\n")
            _unstructured(w, level + 1, value, path, skip)
        elif isinstance(value, list):
            w.write(level, f"{_smart_label(field)}:\n")
            for child in value:
                if isinstance(child, Mapping):
                    _unstructured(w, level + 1, child, path, skip)
                else:
                    w.write(level + 1, f"{_go_value(child)}\n")
        else:
            w.write(level, f"{_smart_label(field)}:\t{_go_value(value)}\n")


def _go_value(v: object) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "<nil>"
    return str(v)


def describe_generic(obj: Obj, events: list[Obj] | None, now: datetime) -> str:
    meta = as_map(obj.get("metadata"))
    w = _Out()
    w.write(0, f"Name:\t{as_text(meta.get('name'))}\n")
    w.write(0, f"Namespace:\t{as_text(meta.get('namespace'))}\n")
    _labels(w, "Labels", meta.get("labels"))
    _annotations(w, "Annotations", meta.get("annotations"))
    _unstructured(w, 0, obj, "", {".metadata.managedFields", ".metadata.name", ".metadata.namespace",
                                  ".metadata.labels", ".metadata.annotations"})
    _events(w, events, now)
    return w.text()


# ----------------------------------------------------------------------------------------------- fetch
def describe(client: KubeClient, res: Resource, namespace: str, name: str, *, show_events: bool = True) -> str:
    """Fetch what kubectl's describer for `res` fetches and render it; raises KubeError (NotFound …)."""
    ns = namespace if res.namespaced else ""
    obj = client.get_json(object_path(res, ns or None, name))
    if not isinstance(obj, Mapping):
        raise KubeError(f"error: the server sent no {res.kind} for {name}")
    now = datetime.now(UTC)
    meta = as_map(obj.get("metadata"))
    uid = as_text(meta.get("uid"))
    if res.plural == "pods":
        events = search_events(client, ns, name, uid) if show_events else None
        return describe_pod(obj, events, now)
    if res.plural == "nodes":
        try:
            pods_data = client.get_json(collection_path(resources.PODS, None), query={
                "fieldSelector": f"spec.nodeName={name},status.phase!=Failed,status.phase!=Succeeded"})
            pods: list[Obj] | None = [as_map(p) for p in as_list(as_map(pods_data).get("items"))]
        except KubeError as exc:
            if exc.code != 403:
                raise
            pods = None
        try:
            lease = client.get_json(object_path(resources.LEASES, "kube-node-lease", name))
        except KubeError as exc:
            if exc.code not in (403, 404):
                raise
            lease = None
        events = None
        if show_events:
            events = search_events(client, "", name, uid, "Node") + search_events(client, "", name, name, "Node")
        return describe_node(obj, pods, as_map(lease) if lease else None, events, now)
    if res.plural == "replicasets":
        sel = label_selector_string(as_map(obj.get("spec")).get("selector")) or ""
        try:
            data = client.get_json(collection_path(resources.PODS, ns), query={"labelSelector": sel} if sel else None)
            pods_rs: list[Obj] | None = [
                as_map(p) for p in as_list(as_map(data).get("items"))
                if any(as_map(r).get("controller") is True and as_map(r).get("uid") == uid
                       for r in as_list(as_map(as_map(p).get("metadata")).get("ownerReferences")))]
        except KubeError:
            pods_rs = None
        events = search_events(client, ns, name, uid, "ReplicaSet") if show_events else None
        return describe_replicaset(obj, pods_rs, events, now)
    if res.plural == "deployments":
        data = client.get_json(collection_path(resources.REPLICASETS, ns))
        owned = [as_map(rs) for rs in as_list(as_map(data).get("items"))
                 if any(as_map(r).get("controller") is True and as_map(r).get("uid") == uid
                        for r in as_list(as_map(as_map(rs).get("metadata")).get("ownerReferences")))]
        owned.sort(key=lambda rs: as_text(as_map(rs.get("metadata")).get("creationTimestamp")))
        template = _template_without_hash(as_map(obj.get("spec")).get("template"))
        new = next((rs for rs in owned if _template_without_hash(as_map(rs.get("spec")).get("template")) == template),
                   None)
        old = [rs for rs in owned if rs is not new and as_map(rs.get("spec")).get("replicas", 1) != 0]
        events = search_events(client, ns, name, uid, "Deployment") if show_events else None
        return describe_deployment(obj, old, new, events, now)
    if res.plural == "jobs":
        events = search_events(client, ns, name, uid, "Job") if show_events else None
        return describe_job(obj, events, now)
    if res.plural == "namespaces":
        return describe_namespace(obj)
    events = search_events(client, ns, name, uid, res.kind) if show_events else None
    return describe_generic(obj, events, now)
