"""kubectl-like commands for people: `hacluster get|apply|delete|describe|logs`, using the kubeconfig that
`hacluster up` wrote into the state directory.

Registered on the `hacluster` group by `hacluster.cli.main` (this module's `register`). Tables come from the
API server's Table answers (the same columns and values kubectl prints) laid out with kubectl's tabwriter;
on a terminal the STATUS and TYPE cells are coloured (rich; NO_COLOR turns it off). Every error is one line on
stderr, worded as kubectl words it (`Error from server (NotFound): pods "x" not found`), with exit code 1.
By default a request that a master refuses without acting (connection refused, 503) goes to the next master
of the kubeconfig; `--master m2` talks to that master only.

One file, a little longer than most: the commands share one context (kubeconfig, failover client,
printing) and each is a short function.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from hacluster.cli import apply as applying
from hacluster.cli.kube import (
    LAST_APPLIED,
    TABLE_ACCEPT,
    KubeClient,
    KubeConfig,
    KubeError,
    collection_path,
    error_line,
    kubeconfig_path,
    list_wrapper,
    load_kubeconfig,
    object_path,
    qualified,
    resolve_resource,
    table_writer,
    to_json,
    to_yaml,
)
from hacluster.config import env_state_dir
from hacluster.model import resources
from hacluster.model.resources import Resource

WATCH_TIMEOUT_S = 300
"""Each watch request asks the server to close after this long; the command then resumes it."""
DELETE_POLL_S = 0.2
"""Pause between the GETs that wait for a deleted object to be gone."""
LIST_PAGE = 500
"""Objects per list request (kubectl's chunk size); the command follows `continue` tokens."""

_GOOD = {"Running", "Completed", "Succeeded", "Ready", "Active"}
_PENDING = {"Pending", "ContainerCreating", "PodInitializing", "Terminating", "SchedulingGated"}


# ------------------------------------------------------------------------------------------- context
class Ctx:
    """The kubeconfig, client, namespace and console of one command."""

    def __init__(self, state_dir: str | None, kubeconfig: str | None, context: str | None, master: str | None,
                 namespace: str | None) -> None:
        sd = Path(state_dir or env_state_dir())
        self.cfg: KubeConfig = load_kubeconfig(kubeconfig_path(sd, kubeconfig), context=context, master=master)
        self.client = KubeClient(self.cfg)
        self.namespace = namespace or self.cfg.namespace
        self.explicit_namespace = namespace is not None
        self.console = Console(highlight=False, soft_wrap=True)
        self.colour = self.console.is_terminal and not self.console.no_color


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed((
        click.option("--state-dir", default=None, metavar="DIR",
                     help="The cluster's state directory (default: $HACLUSTER_STATE_DIR or .hacluster)."),
        click.option("--kubeconfig", default=None, metavar="FILE", help="Another kubeconfig (default: "
                                                                         "STATE_DIR/kubeconfig)."),
        click.option("--context", default=None, help="Use this kubeconfig context only (no failover)."),
        click.option("--master", default=None, metavar="ID",
                     help="Talk to this master only (context <cluster>-ID), e.g. to see its own answer."),
        click.option("-n", "--namespace", default=None, help="Namespace (default: the context's)."),
    )):
        f = option(f)
    return f


def _run(body: Callable[[], int | None]) -> None:
    """Run a command body: KubeError → its one line on stderr and exit 1; Ctrl-C → exit 0."""
    try:
        rc = body()
    except KubeError as exc:
        click.echo(exc.line, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(0)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(rc or 0)


def _split_target(resource: str, names: tuple[str, ...]) -> tuple[Resource, list[str]]:
    """`pods web`, `pod/web`, `pod/web pod/db`: the resource and the names."""
    if "," in resource:
        raise KubeError("error: one resource type at a time (e.g. `hacluster get pods`)")
    if "/" in resource:
        kind, _, name = resource.partition("/")
        res = resolve_resource(kind)
        rest = []
        for n in names:
            k2, _, n2 = n.partition("/")
            if not n2 or resolve_resource(k2) != res:
                raise KubeError("error: there is no need to specify a resource type as a separate argument when "
                                "passing arguments in resource/name form")
            rest.append(n2)
        return res, [name, *rest]
    return resolve_resource(resource), list(names)


# --------------------------------------------------------------------------------------------- tables
def _status_style(column: str, value: str) -> str:
    word = value.strip()
    if column == "STATUS":
        first = word.split(",")[0]
        if first in _GOOD:
            return "yellow" if "SchedulingDisabled" in word else "green"
        if first in _PENDING or first.startswith("Init:") and not first.startswith(("Init:Err", "Init:Crash")):
            return "yellow"
        return "red" if word else ""
    if column == "TYPE":
        return "yellow" if word == "Warning" else ""
    return ""


class TablePrinter:
    """Prints Table rows as `kubectl get` does: uppercase headers, priority-1 columns only with -o wide, a
    NAMESPACE column with -A, LABELS with --show-labels, columns kept across watch events."""

    def __init__(self, ctx: Ctx, *, wide: bool, with_namespace: bool, show_labels: bool, no_headers: bool,
                 kind_prefix: str = "") -> None:
        self.ctx = ctx
        self.wide = wide
        self.with_namespace = with_namespace
        self.show_labels = show_labels
        self.no_headers = no_headers
        self.kind_prefix = kind_prefix
        self.tw = table_writer()
        self.columns: list[int] = []
        self.headers: list[str] = []
        self.header_done = False

    def set_columns(self, table: Mapping[str, Any]) -> None:
        defs = [c for c in table.get("columnDefinitions") or [] if isinstance(c, Mapping)]
        if not defs or self.columns:
            return
        self.columns = [i for i, c in enumerate(defs) if self.wide or not c.get("priority")]
        self.headers = [str(defs[i].get("name", "")).upper() for i in self.columns]
        if self.with_namespace:
            self.headers.insert(0, "NAMESPACE")
        if self.show_labels:
            self.headers.append("LABELS")

    def row_cells(self, row: Mapping[str, Any]) -> list[str]:
        cells = list(row.get("cells") or [])
        meta = (row.get("object") or {}).get("metadata") or {}
        out = [_cell(cells[i]) if i < len(cells) else "" for i in self.columns]
        if out and self.kind_prefix:
            out[0] = f"{self.kind_prefix}/{out[0]}"
        if self.with_namespace:
            out.insert(0, str(meta.get("namespace", "")))
        if self.show_labels:
            labels = meta.get("labels") or {}
            out.append(",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>")
        return out

    def print_rows(self, rows: list[Mapping[str, Any]]) -> None:
        text = ""
        first_header = not self.header_done and not self.no_headers
        if first_header:
            text += "\t".join(self.headers) + "\n"
        self.header_done = True
        for row in rows:
            text += "\t".join(c.replace("\t", " ").replace("\n", " ") for c in self.row_cells(row)) + "\n"
        self.tw.write(text)
        lines = self.tw.flush_cells()
        out = sys.stdout
        for n, cells in enumerate(lines):
            if not self.ctx.colour:
                out.write("".join(cells) + "\n")
                continue
            t = Text()
            is_header = first_header and n == 0
            for i, cell in enumerate(cells):
                column = self.headers[i] if i < len(self.headers) else ""
                style = "bold" if is_header else _status_style(column, cell)
                text = cell.rstrip(" ")
                t.append(text, style=style or None)
                t.append(cell[len(text):])
            self.ctx.console.print(t)
        out.flush()


def _cell(v: Any) -> str:
    if v is None:
        return "<none>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


# ------------------------------------------------------------------------------------------------ get
def _list_all(ctx: Ctx, res: Resource, ns: str | None, query: dict[str, str], table: bool) -> tuple[Any, list[Any]]:
    """Every page of a list (Table rows, or items); returns (first page, all rows/items)."""
    q = dict(query)
    q["limit"] = str(LIST_PAGE)
    first: Any = None
    out: list[Any] = []
    while True:
        page = ctx.client.get_json(collection_path(res, ns), query=q, table=table) or {}
        first = first or page
        out += list(page.get("rows" if table else "items") or [])
        cont = (page.get("metadata") or {}).get("continue")
        if not cont:
            break
        q["continue"] = cont
    if first and table:
        first.setdefault("metadata", {})["resourceVersion"] = (page.get("metadata") or {}).get("resourceVersion",
                                                                                                "")
    return first, out


def _print_objects(ctx: Ctx, res: Resource, objs: list[Mapping[str, Any]], output: str, single: bool) -> None:
    if output == "name":
        for o in objs:
            sys.stdout.write(f"{qualified(res)}/{(o.get('metadata') or {}).get('name', '')}\n")
        return
    doc: Any = objs[0] if single and len(objs) == 1 else list_wrapper(objs)
    sys.stdout.write(to_yaml(doc) if output == "yaml" else to_json(doc))


def _no_resources(ctx: Ctx, res: Resource, all_ns: bool) -> None:
    if res.namespaced and not all_ns:
        click.echo(f"No resources found in {ctx.namespace} namespace.", err=True)
    else:
        click.echo("No resources found", err=True)


def do_get(ctx: Ctx, resource: str, names: tuple[str, ...], output: str | None, watch: bool, all_ns: bool,
           selector: str | None, field_selector: str | None, show_labels: bool, no_headers: bool) -> int:
    res, wanted = _split_target(resource, names)
    if wanted and all_ns:
        raise KubeError("error: a resource cannot be retrieved by name across all namespaces")
    if wanted and (selector or field_selector):
        raise KubeError("error: selectors and the all flag cannot be used when passing resource/name arguments")
    ns = None if (all_ns or not res.namespaced) else ctx.namespace
    with_ns_col = all_ns and res.namespaced
    query: dict[str, str] = {}
    if selector:
        query["labelSelector"] = selector
    if field_selector:
        query["fieldSelector"] = field_selector
    table = output in (None, "wide")
    rc = 0
    printer = TablePrinter(ctx, wide=output == "wide", with_namespace=with_ns_col, show_labels=show_labels,
                           no_headers=no_headers)
    rv = ""
    if wanted:
        got: list[Any] = []
        for name in wanted:
            try:
                if table:
                    t = ctx.client.get_json(object_path(res, ns, name), table=True)
                    printer.set_columns(t)
                    got += list(t.get("rows") or [])
                    rv = str((t.get("metadata") or {}).get("resourceVersion", ""))
                else:
                    got.append(ctx.client.get_json(object_path(res, ns, name)))
            except KubeError as exc:
                click.echo(exc.line, err=True)
                rc = 1
        if table:
            if got:
                printer.print_rows(got)
        elif got:
            _print_objects(ctx, res, got, output or "yaml", single=len(wanted) == 1)
        if watch and len(wanted) == 1 and not rc:
            by_name = ",".join(filter(None, (query.get("fieldSelector"), f"metadata.name={wanted[0]}")))
            _watch(ctx, res, ns, {**query, "fieldSelector": by_name}, rv, printer, output)
        return rc
    first, items = _list_all(ctx, res, ns, query, table)
    rv = str(((first or {}).get("metadata") or {}).get("resourceVersion", ""))
    if table:
        printer.set_columns(first or {})
        if items:
            printer.print_rows(items)
        elif not watch:
            _no_resources(ctx, res, all_ns)
    elif items:
        _print_objects(ctx, res, [_with_kind(res, i) for i in items], output or "yaml", single=False)
    elif not watch:
        _no_resources(ctx, res, all_ns)
    if watch:
        _watch(ctx, res, ns, query, rv, printer, output)
    return rc


def _with_kind(res: Resource, obj: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    out.setdefault("apiVersion", res.api_version)
    out.setdefault("kind", res.kind)
    return out


def _watch(ctx: Ctx, res: Resource, ns: str | None, query: dict[str, str], rv: str, printer: TablePrinter,
           output: str | None) -> None:
    """Follow changes from `rv`, resuming on another master when a stream ends; a too-old version
    re-lists. Runs until Ctrl-C."""
    table = output in (None, "wide")
    while True:
        q = {**query, "watch": "true", "timeoutSeconds": str(WATCH_TIMEOUT_S), "allowWatchBookmarks": "true"}
        if rv:
            q["resourceVersion"] = rv
        expired = False
        started = time.monotonic()
        for raw in ctx.client.stream_lines(collection_path(res, ns), query=q,
                                           accept=TABLE_ACCEPT if table else "application/json",
                                           idle_timeout_s=WATCH_TIMEOUT_S + 30):
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            etype, obj = ev.get("type"), ev.get("object") or {}
            if etype == "ERROR":
                if obj.get("code") == 410:
                    expired = True
                    break
                raise KubeError(error_line(obj, int(obj.get("code") or 0)))
            meta = obj.get("metadata") or {}
            if etype == "BOOKMARK":
                rv = str(meta.get("resourceVersion") or rv)
                continue
            if table:
                printer.set_columns(obj)
                rows = list(obj.get("rows") or [])
                for row in rows:
                    rv = str(((row.get("object") or {}).get("metadata") or {}).get("resourceVersion") or rv)
                printer.print_rows(rows)
            else:
                rv = str(meta.get("resourceVersion") or rv)
                if output == "name":
                    sys.stdout.write(f"{qualified(res)}/{meta.get('name', '')}\n")
                elif output == "json":
                    sys.stdout.write(to_json(obj))
                else:
                    sys.stdout.write("---\n" + to_yaml(obj))
                sys.stdout.flush()
        if expired:
            first, items = _list_all(ctx, res, ns, {k: v for k, v in query.items()}, table)
            rv = str(((first or {}).get("metadata") or {}).get("resourceVersion", ""))
            if table and items:
                printer.print_rows(items)
            continue
        if time.monotonic() - started < WATCH_TIMEOUT_S - 1:
            ctx.client.rotate()  # the master ended the stream early (it lost its quorum): resume elsewhere
            time.sleep(0.2)


# ---------------------------------------------------------------------------------------------- apply
def _resource_of(obj: Mapping[str, Any], source: str) -> Resource:
    kind, av = obj.get("kind"), obj.get("apiVersion")
    for r in resources.ALL:
        if r.kind == kind and r.api_version == av:
            return r
    raise KubeError(f'error: unable to recognize "{source}": no matches for kind "{kind}" in version "{av}"')


def _target_namespace(ctx: Ctx, res: Resource, obj: Mapping[str, Any]) -> str:
    if not res.namespaced:
        return ""
    own = (obj.get("metadata") or {}).get("namespace")
    if own and ctx.explicit_namespace and own != ctx.namespace:
        raise KubeError(f'error: the namespace from the provided object "{own}" does not match the namespace '
                        f'"{ctx.namespace}". You must pass \'--namespace={own}\' to perform this operation.')
    return str(own or ctx.namespace)


def do_apply(ctx: Ctx, files: tuple[str, ...], recursive: bool) -> int:
    if not files:
        raise KubeError("error: must specify one of -f and -k")
    manifests = applying.load_manifests(files, recursive=recursive)
    rc = 0
    for m in manifests:
        try:
            res = _resource_of(m.obj, m.source)
            ns = _target_namespace(ctx, res, m.obj)
            name = str(m.obj["metadata"]["name"])
            click.echo(f"{qualified(res)}/{name} {_apply_one(ctx, res, ns, name, m)}")
        except KubeError as exc:
            click.echo(exc.line, err=True)
            rc = 1
    return rc


def _apply_one(ctx: Ctx, res: Resource, ns: str, name: str, m: applying.Manifest) -> str:
    path = object_path(res, ns or None, name)
    try:
        current = ctx.client.get_json(path)
    except KubeError as exc:
        if exc.code != 404:
            raise _in_context(exc, f'error when retrieving current configuration of "{m.source}"') from exc
        current = None
    modified = applying.with_last_applied(m.obj, ns)
    if current is None:
        try:
            ctx.client.request("POST", collection_path(res, ns or None), body=modified,
                               query={"fieldManager": "kubectl-client-side-apply"})
        except KubeError as exc:
            raise _in_context(exc, f'error when creating "{m.source}"') from exc
        return "created"
    original = applying.original_of(current)
    if original is None:
        click.echo(f"Warning: resource {res.plural}/{name} is missing the {LAST_APPLIED} annotation "
                   "which is required by `hacluster apply` and kubectl apply. The missing annotation will be "
                   "patched automatically.", err=True)
    patch = applying.three_way_patch(original, modified, current)
    if not patch:
        return "unchanged"
    try:
        ctx.client.request("PATCH", path, body=patch, content_type="application/strategic-merge-patch+json",
                           query={"fieldManager": "kubectl-client-side-apply"}, idempotent=True)
    except KubeError as exc:
        raise _in_context(exc, f'error when applying patch to "{m.source}"') from exc
    return "configured"


def _in_context(exc: KubeError, where: str) -> KubeError:
    if not exc.status or exc.reason == "Invalid":
        return exc
    return KubeError(error_line(exc.status, exc.code, where), exc.code, exc.status)


# --------------------------------------------------------------------------------------------- delete
def do_delete(ctx: Ctx, resource: str | None, names: tuple[str, ...], files: tuple[str, ...],
              grace_period: int | None, force: bool, wait: bool, timeout_s: float) -> int:
    targets: list[tuple[Resource, str, str]] = []
    if files:
        if resource:
            raise KubeError("error: give -f FILE or RESOURCE NAME, not both")
        for m in applying.load_manifests(files):
            res = _resource_of(m.obj, m.source)
            targets.append((res, _target_namespace(ctx, res, m.obj), str(m.obj["metadata"]["name"])))
    else:
        if not resource:
            raise KubeError("error: you must specify the type of resource to delete (e.g. `hacluster delete pod "
                            "NAME`) or -f FILE")
        res, wanted = _split_target(resource, names)
        if not wanted:
            raise KubeError("error: resource(s) were provided, but no name was specified")
        targets = [(res, ctx.namespace if res.namespaced else "", n) for n in wanted]
    if force:
        grace_period = 0 if grace_period is None else grace_period
        click.echo("warning: Immediate deletion does not wait for confirmation that the running resource has been "
                   "terminated. The resource may continue to run on the cluster indefinitely.", err=True)
    body: dict[str, Any] = {"propagationPolicy": "Background"}
    if grace_period is not None and grace_period >= 0:
        body["gracePeriodSeconds"] = 1 if grace_period == 0 and not force else grace_period
    rc = 0
    waiting: list[tuple[Resource, str, str, str]] = []
    for res, ns, name in targets:
        try:
            ans = ctx.client.request("DELETE", object_path(res, ns or None, name), body=body).json() or {}
        except KubeError as exc:
            click.echo(exc.line, err=True)
            rc = 1
            continue
        uid = str(((ans.get("metadata") or {}).get("uid")) or ((ans.get("details") or {}).get("uid")) or "")
        click.echo(f'{res.singular} "{name}" deleted')
        waiting.append((res, ns, name, uid))
    if wait:
        deadline = time.monotonic() + timeout_s
        for res, ns, name, uid in waiting:
            while not _gone(ctx, res, ns, name, uid):
                if time.monotonic() >= deadline:
                    click.echo(f"error: timed out waiting for the condition on {res.plural}/{name}", err=True)
                    return 1
                time.sleep(DELETE_POLL_S)
    return rc


def _gone(ctx: Ctx, res: Resource, ns: str, name: str, uid: str) -> bool:
    try:
        obj = ctx.client.get_json(object_path(res, ns or None, name))
    except KubeError as exc:
        if exc.code == 404:
            return True
        raise
    return bool(uid) and str(((obj or {}).get("metadata") or {}).get("uid", "")) != uid


# ------------------------------------------------------------------------------------------- describe
def do_describe(ctx: Ctx, resource: str, names: tuple[str, ...], selector: str | None, all_ns: bool) -> int:
    from hacluster.cli.describe import describe

    res, wanted = _split_target(resource, names)
    targets: list[tuple[str, str]] = []
    if wanted:
        targets = [(ctx.namespace, n) for n in wanted]
    else:
        ns = None if (all_ns or not res.namespaced) else ctx.namespace
        _, items = _list_all(ctx, res, ns, {"labelSelector": selector} if selector else {}, table=False)
        targets = [(str((i.get("metadata") or {}).get("namespace") or ""), str(i["metadata"]["name"])) for i in items]
        if not targets:
            _no_resources(ctx, res, all_ns)
            return 0
    rc = 0
    first = True
    for ns, name in targets:
        try:
            text = describe(ctx.client, res, ns, name)
        except KubeError as exc:
            click.echo(exc.line, err=True)
            rc = 1
            continue
        sys.stdout.write(("" if first else "\n\n") + text)
        first = False
    sys.stdout.flush()
    return rc


# ----------------------------------------------------------------------------------------------- logs
def do_logs(ctx: Ctx, pod: str, container: str | None, follow: bool, tail: int | None, timestamps: bool,
            previous: bool) -> int:
    kind, _, name = pod.partition("/")
    if name:
        if resolve_resource(kind) is not resources.PODS:
            raise KubeError(f"error: cannot get the logs of {kind}: only pods have logs")
    else:
        name = pod
    query: dict[str, str] = {}
    if container:
        query["container"] = container
    if tail is not None and tail >= 0:
        query["tailLines"] = str(tail)
    if timestamps:
        query["timestamps"] = "true"
    if previous:
        query["previous"] = "true"
    path = object_path(resources.PODS, ctx.namespace, name, "log")
    if not follow:
        ans = ctx.client.request("GET", path, query=query, accept="*/*")
        sys.stdout.buffer.write(ans.body)
        sys.stdout.flush()
        return 0
    query["follow"] = "true"
    for line in ctx.client.stream_lines(path, query=query, accept="*/*"):
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
    return 0


# ---------------------------------------------------------------------------------------- registration
def register(main: click.Group) -> None:
    """Add get, apply, delete, describe and logs to the `hacluster` command group."""

    @main.command("get", context_settings={"help_option_names": ["-h", "--help"]})
    @click.argument("resource")
    @click.argument("names", nargs=-1)
    @click.option("-o", "--output", type=click.Choice(["wide", "yaml", "json", "name"]), default=None,
                  help="wide: more columns; yaml/json: the objects; name: TYPE/NAME.")
    @click.option("-w", "--watch", is_flag=True, help="After listing, print every change until Ctrl-C.")
    @click.option("-A", "--all-namespaces", "all_ns", is_flag=True, help="Every namespace.")
    @click.option("-l", "--selector", default=None, help="Label selector, e.g. app=web,tier!=db.")
    @click.option("--field-selector", default=None, help="Field selector, e.g. spec.nodeName=node-1.")
    @click.option("--show-labels", is_flag=True, help="Add a LABELS column.")
    @click.option("--no-headers", is_flag=True, help="Leave out the header line.")
    @_common
    def get(resource: str, names: tuple[str, ...], output: str | None, watch: bool, all_ns: bool,
            selector: str | None, field_selector: str | None, show_labels: bool, no_headers: bool,
            state_dir: str | None, kubeconfig: str | None, context: str | None, master: str | None,
            namespace: str | None) -> None:
        """List pods, nodes, events, replicasets (rs), namespaces or leases, as `kubectl get` prints them."""
        _run(lambda: do_get(Ctx(state_dir, kubeconfig, context, master, namespace), resource, names, output,
                            watch, all_ns, selector, field_selector, show_labels, no_headers))

    @main.command("apply", context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("-f", "--filename", "files", multiple=True, metavar="FILE|DIR|-",
                  help="Manifest file, directory of .yaml/.yml/.json files, or - for stdin (repeatable).")
    @click.option("-R", "--recursive", is_flag=True, help="Walk directories recursively.")
    @_common
    def apply_cmd(files: tuple[str, ...], recursive: bool, state_dir: str | None, kubeconfig: str | None,
                  context: str | None, master: str | None, namespace: str | None) -> None:
        """Create or update objects from manifests, as `kubectl apply` does (created/configured/unchanged)."""
        _run(lambda: do_apply(Ctx(state_dir, kubeconfig, context, master, namespace), files, recursive))

    @main.command("delete", context_settings={"help_option_names": ["-h", "--help"]})
    @click.argument("resource", required=False)
    @click.argument("names", nargs=-1)
    @click.option("-f", "--filename", "files", multiple=True, metavar="FILE|DIR|-",
                  help="Delete the objects of these manifests.")
    @click.option("--grace-period", type=int, default=None, help="Seconds the pod gets to stop (-1: its own).")
    @click.option("--force", is_flag=True, help="With --grace-period=0: remove at once, without the kubelet.")
    @click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the objects are gone.")
    @click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True,
                  help="Seconds to wait for --wait.")
    @_common
    def delete(resource: str | None, names: tuple[str, ...], files: tuple[str, ...], grace_period: int | None,
               force: bool, wait: bool, timeout_s: float, state_dir: str | None, kubeconfig: str | None,
               context: str | None, master: str | None, namespace: str | None) -> None:
        """Delete objects by TYPE NAME, TYPE/NAME or -f FILE and wait until they are gone."""
        _run(lambda: do_delete(Ctx(state_dir, kubeconfig, context, master, namespace), resource, names, files,
                               grace_period, force, wait, timeout_s))

    @main.command("describe", context_settings={"help_option_names": ["-h", "--help"]})
    @click.argument("resource")
    @click.argument("names", nargs=-1)
    @click.option("-l", "--selector", default=None, help="Describe the objects matching this label selector.")
    @click.option("-A", "--all-namespaces", "all_ns", is_flag=True)
    @_common
    def describe_cmd(resource: str, names: tuple[str, ...], selector: str | None, all_ns: bool,
                     state_dir: str | None, kubeconfig: str | None, context: str | None, master: str | None,
                     namespace: str | None) -> None:
        """Show an object in detail with its events, as `kubectl describe` does."""
        _run(lambda: do_describe(Ctx(state_dir, kubeconfig, context, master, namespace), resource, names,
                                 selector, all_ns))

    @main.command("logs", context_settings={"help_option_names": ["-h", "--help"]})
    @click.argument("pod")
    @click.option("-c", "--container", default=None, help="Container (needed when the pod has several).")
    @click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
    @click.option("--tail", type=int, default=None, help="Only the last N lines.")
    @click.option("--timestamps", is_flag=True, help="Prefix each line with its time.")
    @click.option("-p", "--previous", is_flag=True, help="The previous instance of the container.")
    @_common
    def logs(pod: str, container: str | None, follow: bool, tail: int | None, timestamps: bool, previous: bool,
             state_dir: str | None, kubeconfig: str | None, context: str | None, master: str | None,
             namespace: str | None) -> None:
        """Print a container's log (the master proxies it from the pod's kubelet)."""
        _run(lambda: do_logs(Ctx(state_dir, kubeconfig, context, master, namespace), pod, container, follow, tail,
                             timestamps, previous))
