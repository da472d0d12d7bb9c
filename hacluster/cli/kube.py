"""What the kubectl-like commands (`hacluster get|apply|delete|describe|logs`) share: the kubeconfig that
`hacluster up` writes, an HTTP client that moves between masters, kubectl's error lines, Go's tabwriter
(kubectl aligns every table and `describe` with it) and kubectl's YAML/JSON printing.

Used by `hacluster.cli.kubectl_cmd`, `hacluster.cli.describe` and `hacluster.cli.apply`. Everything that
talks to the network is in `KubeClient`; the formatting helpers are pure functions.

Failover: a request goes to the kubeconfig's current context first and, on a *definite* failure (connection
refused, 503: nothing happened), to the other masters the kubeconfig names (contexts `<cluster>-<master>`).
A request that may have taken effect (timeout or connection lost after sending, 504) is repeated only when it
is safe to repeat (GET, PUT, DELETE); otherwise the caller gets `KubeError` saying the outcome is unknown.
Which is which is `hacluster.model.outcomes`' table, shared with the ApiClient and the chaos workload.
With `--master`/`--context` the client talks to that one master only and shows its answer, as kubectl would.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hacluster.model import resources
from hacluster.model.outcomes import Outcome, Transport, of_status, of_transport, retry_elsewhere
from hacluster.model.resources import Resource

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
REQUEST_TIMEOUT_S = 10.0
"""One HTTP exchange (connect + answer) with one master."""
DEADLINE_S = 20.0
"""All attempts of one request, across masters."""
RETRY_PAUSE_S = 0.3
RETRY_AFTER_MAX_S = 10.0


def _pause_asked(code: int, retry_after: str | None, pinned: bool) -> float:
    """How long to wait before the next attempt as the answer asks: a 429's `Retry-After` always (the master
    is overloaded: feeding it faster makes it worse, as client-go knows), a 503's only when pinned to that
    master (unpinned, another master may answer at once). Capped at RETRY_AFTER_MAX_S."""
    if retry_after is None or not (code == 429 or pinned):
        return 0.0
    try:
        seconds = float(retry_after)
    except ValueError:
        return 1.0
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S) if seconds == seconds else 1.0
"""Pause after every master failed once, before the next round."""
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


# ------------------------------------------------------------------------------------------- errors
class KubeError(Exception):
    """A failure to show the user as one line (kubectl's wording); `code` is the HTTP status (0: none)."""

    def __init__(self, line: str, code: int = 0, status: Mapping[str, Any] | None = None) -> None:
        super().__init__(line)
        self.line = line
        self.code = code
        self.status = dict(status or {})

    @property
    def reason(self) -> str:
        return str(self.status.get("reason", ""))


def error_line(status: Mapping[str, Any], code: int, context: str = "") -> str:
    """kubectl's one-line rendering of a `Status`: `Error from server (NotFound): pods "x" not found`,
    `The Pod "bad" is invalid: spec.containers: Required value`; `context` ("error when creating
    "pod.yaml"") goes between the reason and the message, as kubectl puts it there."""
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or "").strip()
    details = status.get("details") if isinstance(status.get("details"), Mapping) else {}
    assert isinstance(details, Mapping)
    if reason == "Invalid":
        kind, name = str(details.get("kind") or ""), str(details.get("name") or "")
        head = f'The {kind} "{name}" is invalid' if kind or name else "The request is invalid"
        causes = [c for c in details.get("causes") or [] if isinstance(c, Mapping)]
        rendered = [f"{c.get('field')}: {c.get('message')}" if c.get("field") else str(c.get("message", ""))
                    for c in causes]
        if not rendered:
            return head
        return f"{head}: {rendered[0]}" if len(rendered) == 1 else f"{head}: [{', '.join(rendered)}]"
    prefix = f"Error from server ({reason})" if reason else "Error from server"
    if context:
        return f"{prefix}: {context}: {message}"
    return f"{prefix}: {message}" if message else f"{prefix}: the server responded with the status code {code}"


# ----------------------------------------------------------------------------------------- kubeconfig
@dataclass(frozen=True)
class Endpoint:
    """One API server of the kubeconfig: its context name and URL."""

    name: str
    server: str


@dataclass
class KubeConfig:
    """What the commands need from a kubeconfig: where to go (in order of preference), as whom, trusting
    which CA, and the default namespace."""

    endpoints: list[Endpoint]
    token: str
    namespace: str
    ca_data: bytes | None = None
    insecure: bool = False
    pinned: bool = False


def kubeconfig_path(state_dir: Path, explicit: str | None = None) -> Path:
    return Path(explicit) if explicit else state_dir / "kubeconfig"


def load_kubeconfig(path: Path, *, context: str | None = None, master: str | None = None) -> KubeConfig:
    """Read a kubeconfig. `context` or `master` (a master id: context `<cluster>-<master>`) pins one server;
    otherwise the current context comes first and the other masters of the same cluster follow."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KubeError(f"error: cannot read the kubeconfig {path}: {exc.strerror or exc} (run `hacluster up` "
                        "or give --state-dir)") from exc
    except yaml.YAMLError as exc:
        raise KubeError(f"error: the kubeconfig {path} is not YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise KubeError(f"error: the kubeconfig {path} is empty or not a mapping")
    clusters = {c.get("name"): c.get("cluster") or {} for c in raw.get("clusters") or [] if isinstance(c, dict)}
    users = {u.get("name"): u.get("user") or {} for u in raw.get("users") or [] if isinstance(u, dict)}
    contexts = {c.get("name"): c.get("context") or {} for c in raw.get("contexts") or [] if isinstance(c, dict)}
    current = str(raw.get("current-context") or "")
    chosen = current
    if master and not context:
        matches = [n for n in contexts if str(n).endswith(f"-{master}")]
        if not matches:
            raise KubeError(f"error: no context for master {master!r} in {path} (contexts: "
                            f"{', '.join(str(n) for n in contexts)})")
        chosen = str(matches[0])
    elif context:
        chosen = context
    if chosen not in contexts:
        raise KubeError(f'error: context "{chosen}" does not exist in {path}')
    ctx = contexts[chosen]
    cluster_name = str(ctx.get("cluster") or "")
    cluster = clusters.get(cluster_name)
    if cluster is None:
        raise KubeError(f'error: cluster "{cluster_name}" of context "{chosen}" does not exist in {path}')
    user = users.get(ctx.get("user")) or {}
    token = str(user.get("token") or "")
    if not token and user.get("tokenFile"):
        token = Path(str(user["tokenFile"])).read_text().strip()
    ca: bytes | None = None
    if cluster.get("certificate-authority-data"):
        ca = base64.b64decode(str(cluster["certificate-authority-data"]))
    elif cluster.get("certificate-authority"):
        ca = Path(str(cluster["certificate-authority"])).read_bytes()
    endpoints = [Endpoint(str(chosen), str(cluster.get("server") or ""))]
    pinned = bool(context or master)
    if not pinned:
        # The other masters of this cluster: `hacluster up` names their clusters `<cluster>-<master id>`.
        for name, other in clusters.items():
            server = str((other or {}).get("server") or "")
            if str(name).startswith(f"{cluster_name}-") and server and server not in {e.server for e in endpoints}:
                endpoints.append(Endpoint(str(name), server))
    return KubeConfig(endpoints=endpoints, token=token, namespace=str(ctx.get("namespace") or "default"),
                      ca_data=ca, insecure=bool(cluster.get("insecure-skip-tls-verify")), pinned=pinned)


# -------------------------------------------------------------------------------------------- client
@dataclass
class Answer:
    code: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


class KubeClient:
    """Synchronous requests to the masters of a kubeconfig, with the failover described above."""

    def __init__(self, cfg: KubeConfig, *, request_timeout_s: float = REQUEST_TIMEOUT_S,
                 deadline_s: float = DEADLINE_S) -> None:
        self.cfg = cfg
        self.request_timeout_s = request_timeout_s
        self.deadline_s = deadline_s
        self.current = 0
        self._ssl: ssl.SSLContext | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            if self.cfg.insecure:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            elif self.cfg.ca_data:
                ctx = ssl.create_default_context(cadata=self.cfg.ca_data.decode())
            else:
                ctx = ssl.create_default_context()
            self._ssl = ctx
        return self._ssl

    def _connection(self, server: str, timeout_s: float | None) -> http.client.HTTPConnection:
        u = urllib.parse.urlsplit(server)
        host = u.hostname or "127.0.0.1"
        if u.scheme == "https":
            return http.client.HTTPSConnection(host, u.port or 443, timeout=timeout_s, context=self._ssl_context())
        return http.client.HTTPConnection(host, u.port or 80, timeout=timeout_s)

    def _headers(self, accept: str, content_type: str | None) -> dict[str, str]:
        h = {"Accept": accept, "User-Agent": "hacluster-cli"}
        if self.cfg.token:
            h["Authorization"] = f"Bearer {self.cfg.token}"
        if content_type:
            h["Content-Type"] = content_type
        return h

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: Any = None,
                content_type: str = "application/json", accept: str = "application/json",
                idempotent: bool | None = None) -> Answer:
        """One request; raise KubeError for an error Status, an unknown outcome or no master answering."""
        if idempotent is None:
            idempotent = method in ("GET", "PUT", "DELETE", "HEAD")
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        deadline = time.monotonic() + self.deadline_s
        tried: list[str] = []
        n = len(self.cfg.endpoints)
        attempt = 0
        unreachable = 0  # connection failures in a row: every master twice (a pinned one once) and we give up
        while True:
            ep = self.cfg.endpoints[self.current]
            attempt += 1
            sent = False
            try:
                conn = self._connection(ep.server, self.request_timeout_s)
                try:
                    conn.connect()
                    sent = True
                    conn.request(method, url, body=data,
                                 headers=self._headers(accept, content_type if data is not None else None))
                    resp = conn.getresponse()
                    answer = Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
                finally:
                    conn.close()
            except ssl.SSLError as exc:
                raise KubeError(f"error: TLS with {ep.server} failed: {exc.reason or exc}") from exc
            except (ConnectionRefusedError, ConnectionResetError, TimeoutError, OSError,
                    http.client.HTTPException) as exc:
                why = _os_reason(exc)
                tried.append(f"{ep.name} ({ep.server}): {why}")
                failure = Transport.NO_ANSWER if sent and not isinstance(exc, ConnectionRefusedError) \
                    else Transport.CONNECT_REFUSED
                if not retry_elsewhere(of_transport(failure), idempotent=idempotent):
                    raise KubeError(f"error: no answer from {ep.server} ({why}): the {method} may or may not "
                                    "have taken effect") from exc
                unreachable += 1
                if unreachable < (1 if self.cfg.pinned else 2 * n) and self._next(attempt, n, deadline):
                    continue
                raise KubeError(f"error: no master answered: {'; '.join(tried[-n:])}") from exc
            unreachable = 0
            outcome = of_status(answer.code)
            if outcome is Outcome.OK:
                return answer
            status = answer.json()
            if not isinstance(status, dict):
                status = {"message": answer.body.decode(errors="replace").strip()}
            retry_after = "retry-after" in answer.headers
            if retry_elsewhere(outcome, idempotent=idempotent):  # 503, 429; 504 when safe to repeat
                tried.append(f"{ep.name}: {answer.code} {status.get('message', '')}")
                if self.cfg.pinned and not retry_after:
                    raise KubeError(error_line(status, answer.code), answer.code, status)
                if self._next(attempt, n, deadline,
                              pause_s=_pause_asked(answer.code, answer.headers.get("retry-after"), self.cfg.pinned)):
                    continue
            raise KubeError(error_line(status, answer.code), answer.code, status)

    def _next(self, attempt: int, n: int, deadline: float, *, pause_s: float = 0.0) -> bool:
        """Move to the next master; pause `pause_s` (what the server asked), else a short pause after a full
        round. False when the deadline has passed."""
        if time.monotonic() >= deadline:
            return False
        if not self.cfg.pinned:
            self.current = (self.current + 1) % n
        if pause_s > 0 or attempt % n == 0:
            time.sleep(min(pause_s or RETRY_PAUSE_S, max(0.0, deadline - time.monotonic())))
        return time.monotonic() < deadline

    def get_json(self, path: str, *, query: Mapping[str, str] | None = None, table: bool = False) -> Any:
        return self.request("GET", path, query=query, accept=TABLE_ACCEPT if table else "application/json").json()

    def stream_lines(self, path: str, *, query: Mapping[str, str], accept: str = "application/json",
                     idle_timeout_s: float | None = None) -> Iterator[bytes]:
        """GET a streaming answer (watch, followed logs) from the current master and yield its lines; a
        failure before the stream starts moves on like `request`. The stream ends when the server closes it."""
        url = path + "?" + urllib.parse.urlencode(query)
        deadline = time.monotonic() + self.deadline_s
        n = len(self.cfg.endpoints)
        attempt = 0
        tried: list[str] = []
        while True:
            ep = self.cfg.endpoints[self.current]
            attempt += 1
            conn = self._connection(ep.server, self.request_timeout_s)
            try:
                conn.connect()
                conn.request("GET", url, headers=self._headers(accept, None))
                resp = conn.getresponse()
            except ssl.SSLError as exc:
                conn.close()
                raise KubeError(f"error: TLS with {ep.server} failed: {exc.reason or exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                tried.append(f"{ep.name} ({ep.server}): {_os_reason(exc)}")
                if not self.cfg.pinned and len(tried) < 2 * n and self._next(attempt, n, deadline):
                    continue
                raise KubeError(f"error: no master answered: {'; '.join(tried[-n:])}") from exc
            if resp.status >= 400:
                raw = resp.read()
                conn.close()
                try:
                    status = json.loads(raw)
                except ValueError:
                    status = {"message": raw.decode(errors="replace").strip()}
                if not isinstance(status, dict):
                    status = {"message": str(status)}
                retry_after = resp.getheader("Retry-After") is not None
                shown_as_is = self.cfg.pinned and not retry_after  # pinned: its answer, unless it asks to wait
                if retry_elsewhere(of_status(resp.status), idempotent=True) and not shown_as_is:
                    tried.append(f"{ep.name}: {resp.status}")
                    if self._next(attempt, n, deadline,
                                  pause_s=_pause_asked(resp.status, resp.getheader("Retry-After"), self.cfg.pinned)):
                        continue
                raise KubeError(error_line(status, resp.status), resp.status, status)
            try:
                if conn.sock is not None:
                    conn.sock.settimeout(idle_timeout_s)
                while True:
                    line = resp.readline()
                    if not line:
                        return
                    yield line
            except (OSError, http.client.HTTPException):
                return
            finally:
                conn.close()

    def rotate(self) -> None:
        """Prefer the next master (after a stream from the current one ended early)."""
        if not self.cfg.pinned:
            self.current = (self.current + 1) % len(self.cfg.endpoints)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


# ------------------------------------------------------------------------------------------ resources
def resolve_resource(word: str) -> Resource:
    """A resource by plural, singular, short name or kind, case-insensitively, as kubectl resolves it:
    "pods", "pod", "po", "Pod", "rs", "replicasets.apps"."""
    w = word.lower()
    base, _, group = w.partition(".")
    for r in resources.ALL:
        names = {r.plural, r.singular, r.kind.lower(), *r.short_names}
        if base in names and (not group or group == r.group):
            return r
    raise KubeError(f'error: the server doesn\'t have a resource type "{word}"')


def collection_path(res: Resource, namespace: str | None) -> str:
    """The list path; `namespace` None for every namespace (or a cluster-scoped resource)."""
    root = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    if res.namespaced and namespace:
        return f"{root}/namespaces/{namespace}/{res.plural}"
    return f"{root}/{res.plural}"


def object_path(res: Resource, namespace: str | None, name: str, subresource: str = "") -> str:
    path = f"{collection_path(res, namespace)}/{urllib.parse.quote(name, safe='')}"
    return f"{path}/{subresource}" if subresource else path


def qualified(res: Resource) -> str:
    """How kubectl names an object's type in its messages: "pod", "replicaset.apps"."""
    return f"{res.singular}.{res.group}" if res.group else res.singular


# -------------------------------------------------------------------------------------------- tabwriter
class TabWriter:
    """Go's `text/tabwriter` (cells end with a tab, lines with a newline; the text after a line's last tab is
    not part of any column), as kubectl uses it: `describe` with minwidth 0, padding 2; tables with
    liggitt/tabwriter's minwidth 6, padding 3 and `RememberWidths`, so `get -w` rows keep their columns.

    `write` buffers text; `flush` formats the buffered lines (column blocks as Go computes them) and returns
    them. With `remember`, column widths never shrink across flushes."""

    def __init__(self, *, minwidth: int = 0, padding: int = 2, remember: bool = False) -> None:
        self.minwidth = minwidth
        self.padding = padding
        self.remember = remember
        self._max_widths: list[int] = []
        self._buf = ""

    def write(self, text: str) -> None:
        self._buf += text

    def flush(self) -> str:
        lines, ends_with_newline = self._take()
        if lines is None:
            return ""
        return "\n".join("".join(cells) for cells in lines) + ("\n" if ends_with_newline else "")

    def flush_cells(self) -> list[list[str]]:
        """Like `flush`, but each formatted line as its padded cells (to style cells without moving them)."""
        lines, _ = self._take()
        return lines or []

    def _take(self) -> tuple[list[list[str]] | None, bool]:
        text, self._buf = self._buf, ""
        if not text:
            return None, False
        raw_lines = text.split("\n")
        ends_with_newline = raw_lines[-1] == ""
        if ends_with_newline:
            raw_lines.pop()
        lines = [line.split("\t") for line in raw_lines]
        out: list[list[str]] = []
        self._format(lines, 0, len(lines), [], out)
        return out, ends_with_newline

    def _format(self, lines: list[list[str]], line0: int, line1: int, widths: list[int],
                out: list[list[str]]) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            self._write_lines(lines, line0, this, widths, out)
            line0 = this
            width = self.minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + self.padding)
                this += 1
            if self.remember:
                if len(self._max_widths) < len(widths):
                    self._max_widths += widths[len(self._max_widths):]
                if len(self._max_widths) == len(widths):
                    self._max_widths.append(width)
                elif self._max_widths[len(widths)] > width:
                    width = self._max_widths[len(widths)]
                else:
                    self._max_widths[len(widths)] = width
            self._format(lines, line0, this, widths + [width], out)
            line0 = this
        self._write_lines(lines, line0, line1, widths, out)

    @staticmethod
    def _write_lines(lines: list[list[str]], line0: int, line1: int, widths: list[int],
                     out: list[list[str]]) -> None:
        for cells in lines[line0:line1]:
            out.append([cell.ljust(widths[j]) if j < len(widths) and j < len(cells) - 1 else cell
                        for j, cell in enumerate(cells)])


def tabbed(text: str) -> str:
    """`describe`'s `tabbedString`: tabwriter with minwidth 0, padding 2."""
    tw = TabWriter(minwidth=0, padding=2)
    tw.write(text)
    return tw.flush()


def table_writer() -> TabWriter:
    """The writer of `kubectl get` tables."""
    return TabWriter(minwidth=6, padding=3, remember=True)


# ----------------------------------------------------------------------------------------- YAML / JSON
def to_json(obj: Any) -> str:
    """`kubectl -o json`: four-space indentation, sorted keys, Go's HTML-safe escapes, a final newline."""
    return go_json_escapes(json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False)) + "\n"


def go_json_escapes(text: str) -> str:
    """The escapes Go's json.Marshal adds to JSON text: <, > and & (HTML-safe) and U+2028/U+2029."""
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


class _GoYamlDumper(yaml.SafeDumper):
    """PyYAML made to print like go-yaml v2 (what `kubectl -o yaml` uses): strings that would read back as
    another type are double-quoted, multi-line strings are literal blocks, no line wrapping."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    resolved = dumper.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    if resolved != "tag:yaml.org,2002:str" or value == "" or value in ("y", "Y", "n", "N") or _go_number(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


def _go_number(value: str) -> bool:
    """Would go-yaml v2 read this plain scalar as a number (it tries Go's ParseInt/ParseFloat)?"""
    if not value or value[0] not in "+-.0123456789":
        return False
    text = value.replace("_", "")
    try:
        int(text, 0)
        return True
    except ValueError:
        pass
    try:
        float(text)
        return True
    except ValueError:
        return False


_GoYamlDumper.add_representer(str, _represent_str)


def to_yaml(obj: Any) -> str:
    """`kubectl -o yaml`: sorted keys, block style, lists not indented under their key, long quoted strings
    folded at 80 columns (go-yaml and PyYAML share libyaml's emitter rules)."""
    return yaml.dump(obj, Dumper=_GoYamlDumper, sort_keys=True, default_flow_style=False, allow_unicode=True,
                     width=80)


def list_wrapper(items: Sequence[Any]) -> dict[str, Any]:
    """What kubectl prints around several objects in -o yaml/json."""
    return {"apiVersion": "v1", "items": list(items), "kind": "List", "metadata": {"resourceVersion": ""}}
