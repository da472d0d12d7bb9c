"""Writes of stored objects: create, update, patch, delete (one or a collection), the pod `binding` and
`eviction` subresources, and the `scale` subresource. Each builds a command and proposes it; update, patch
and scale go through one guaranteed update (read, mutate, validate, compare-and-set, retry on conflicts the
client did not cause). Every proposal of one object is recorded in its trace (`objtrace`).

Used by the API server's routing (`hacluster.apiserver.routing`).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from hacluster.apiserver import patch as patching
from hacluster.apiserver.auth import User, authorize
from hacluster.apiserver.decode import BodyDecoder, decode_small
from hacluster.apiserver.objtrace import ObjectTraces, object_key
from hacluster.apiserver.reads import Reads
from hacluster.apiserver.request import (
    COMMITTED,
    WRITER,
    Target,
    dry_run,
    int_param,
    json_response,
    result_error,
    selectors,
    with_warnings,
)
from hacluster.apiserver.scale import scale_of
from hacluster.ids import new_uid
from hacluster.model import commands as cmds
from hacluster.model import errors as E
from hacluster.model import schema, validation
from hacluster.model.resources import Resource
from hacluster.model.timestamps import rfc3339
from hacluster.store.api import ReplicatedStore
from hacluster.store.state import Result, deep_copy

Obj = dict[str, Any]

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' utilrand alphabet
_SERVER_SET_META = ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                    "deletionGracePeriodSeconds", "generation", "selfLink", "managedFields")


class Writes:
    """The write handlers of one master; `reads` gives the barrier of a dry-run delete."""

    def __init__(self, master_id: str, store: ReplicatedStore, clock: Callable[[], float], traces: ObjectTraces,
                 decoder: BodyDecoder, reads: Reads, *, update_conflict_retries: int) -> None:
        self.master_id = master_id
        self.update_conflict_retries = update_conflict_retries
        self.store = store
        self.clock = clock
        self.traces = traces
        self.decoder = decoder
        self.reads = reads

    async def store_propose(self, command: cmds.AnyCommand) -> Result:
        """Propose, and record the write in the object's trace: who, when, how long to commit, and the
        term and commit index this master saw when the answer came (an upper bound of the entry's index)."""
        key = object_key(command)
        if key is None:
            return await self.store.propose(command)
        entry: dict[str, Any] = {"write": type(command).__name__, "user": WRITER.get(),
                                 "master": self.master_id, "role": self.store.view().role,
                                 "proposed_at": round(self.clock(), 6), "outcome": "no answer (request cancelled)"}
        start = time.monotonic()
        try:
            result = await self.store.propose(command)
            entry["outcome"] = "committed" if result.ok else f"refused: {result.error.reason if result.error else ''}"
            if key[0] == "pods" and result.ok and isinstance(result.obj, dict):
                conditions = (result.obj.get("status") or {}).get("conditions") or []
                entry["ready"] = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
                                     if isinstance(c, dict))
            return result
        except E.ApiError as err:
            entry["outcome"] = f"{err.code} {err.reason}"
            raise
        finally:
            view = self.store.view()
            entry.update({"answered_s": round(time.monotonic() - start, 6), "term": view.term,
                          "commit_index": view.commit_index})
            self.traces.record(key, entry)

    async def propose(self, command: cmds.AnyCommand) -> Result:
        result = await self.store_propose(command)
        if not result.ok:
            raise result_error(result)
        COMMITTED.set(result.revision)
        return result

    def new_name(self, generate_name: str) -> str:
        return generate_name + "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))

    async def create(self, request: web.Request, user: User, t: Target) -> web.Response:
        body = await self.decoder.read_body(request)
        obj, warnings = self.decoder.decode_object(request, t.res, body)
        meta = obj.get("metadata")
        if meta is None or not isinstance(meta, dict):
            meta = {}
        obj = dict(obj)
        obj["metadata"] = meta = dict(meta)
        if t.res.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and body_ns != t.namespace:
                raise E.BadRequest("the namespace of the provided object does not match the namespace sent on the "
                                   "request")
            if not t.namespace:
                raise E.NotFound("the server could not find the requested resource")
            meta["namespace"] = t.namespace
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise E.BadRequest("resourceVersion should not be set on objects to be created")
        for k in _SERVER_SET_META:
            meta.pop(k, None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self.new_name(str(meta["generateName"]))
        authorize(user, "create", t.res, t.namespace, meta.get("name", ""))
        obj["apiVersion"], obj["kind"] = t.res.api_version, t.res.kind
        if t.res.plural in ("pods", "replicasets", "namespaces", "deployments", "jobs"):
            obj.pop("status", None)  # PrepareForCreate: their status is the system's (`kubectl create ns` sends {})
        meta["uid"] = new_uid()  # before defaulting: a Job's generated selector names its uid
        validation.default_object(t.res.plural, obj)
        causes = validation.VALIDATORS[t.res.plural](obj)
        if causes:
            raise E.invalid(t.res.kind, meta.get("name", ""), causes, t.res.group)
        now = self.clock()
        meta["creationTimestamp"] = rfc3339(now)
        if dry_run(request):
            return with_warnings(json_response(obj, status=201), warnings)
        result = await self.propose(cmds.Create(resource=t.res.plural, namespace=t.namespace, obj=obj))
        return with_warnings(json_response(result.obj, status=201), warnings)

    async def update(self, request: web.Request, user: User, t: Target) -> web.Response:
        body = await self.decoder.read_body(request)
        if t.subresource == "scale":
            return await self.update_scale(request, user, t, body)
        obj, warnings = self.decoder.decode_object(request, t.res, body)
        meta = dict(obj.get("metadata") or {})
        if meta.get("name") and meta["name"] != t.name:
            raise E.BadRequest(f"the name of the object ({meta['name']}) does not match the name on the URL "
                               f"({t.name})")
        if t.res.namespaced and meta.get("namespace") and meta["namespace"] != t.namespace:
            raise E.BadRequest("the namespace of the provided object does not match the namespace sent on the "
                               "request")
        meta["name"] = t.name
        if t.res.namespaced:
            meta["namespace"] = t.namespace
        obj = dict(obj)
        obj["metadata"] = meta
        obj["apiVersion"], obj["kind"] = t.res.api_version, t.res.kind
        expected = str(meta.get("resourceVersion") or "")
        resp = await self.guaranteed_update(request, user, t, lambda current: obj, expected)
        return with_warnings(resp, warnings)

    async def patch(self, request: web.Request, user: User, t: Target) -> web.Response:
        ctype = (request.content_type or "").lower()
        if ctype == patching.APPLY_PATCH:
            raise E.UnsupportedMediaType("server-side apply is not supported by hacluster: use client-side "
                                         "`kubectl apply` (the default)")
        if ctype not in patching.PATCH_TYPES:
            raise E.UnsupportedMediaType(f"the body of the request was in an unknown format - accepted media "
                                         f"types include: {', '.join(patching.PATCH_TYPES)}")
        body = await self.decoder.read_body(request)
        if t.subresource == "scale":
            return await self.patch_scale(request, user, t, ctype, body)
        warnings: list[str] = []

        def mutate(current: Obj) -> Obj:
            try:
                patched = patching.apply_patch(ctype, current, body)
            except patching.PatchError as exc:
                if exc.code == 422:
                    raise E.Invalid(str(exc)) from exc
                if exc.code == 415:
                    raise E.UnsupportedMediaType(str(exc)) from exc
                raise E.BadRequest(str(exc)) from exc
            decoded, warns = self.decoder.decode_object(request, t.res, patched)
            warnings[:] = warns
            return decoded

        patch_rv = ""
        if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
            patch_rv = str(body["metadata"].get("resourceVersion") or "")
        resp = await self.guaranteed_update(request, user, t, mutate, patch_rv)
        return with_warnings(resp, warnings)

    async def guaranteed_update(self, request: web.Request, user: User, t: Target,
                                 mutate: Callable[[Obj], Obj], client_rv: str) -> web.Response:
        """Read, mutate, validate and compare-and-set, retrying on conflicts the client did not cause."""
        for attempt in range(self.update_conflict_retries):
            if attempt or request.query.get("resourceVersion") != "0":
                await self.store.linearizable_barrier()
            current = self.store.read(lambda s: s.get(t.res.plural, t.namespace, t.name))
            if current is None:
                raise E.not_found(t.res.plural, t.name, t.res.group)
            authorize(user, "update" if request.method == "PUT" else "patch", t.res, t.namespace, t.name,
                      t.subresource, current)
            # Stored objects are read-only and shared with every reader: mutation and defaulting below work
            # on a private copy (a shallow copy would let them change the stored nested dicts).
            new = mutate(deep_copy(current))
            meta = dict(new.get("metadata") or {})
            meta["name"], new = t.name, dict(new)
            if t.res.namespaced:
                meta["namespace"] = t.namespace
            new["metadata"] = meta
            cur_rv = current["metadata"]["resourceVersion"]
            if client_rv and client_rv != cur_rv:
                raise E.conflict(t.res.plural, t.name, t.res.group)
            if t.subresource != "status":
                if t.res.has_status:
                    new["status"] = current.get("status")
                if t.res.plural == "pods":
                    new_spec = new.get("spec") or {}
                    if new_spec.get("nodeName") != (current.get("spec") or {}).get("nodeName") \
                            and not new_spec.get("nodeName"):
                        new.setdefault("spec", {})["nodeName"] = current["spec"].get("nodeName")
                    validation.default_pod_spec(new.setdefault("spec", {}))
                    for c in new["spec"].get("containers") or []:
                        validation.canonical_quantities(c.get("resources"))
                    causes = validation.validate_pod_update(new, current)
                elif t.res.plural in ("replicasets", "deployments", "jobs"):
                    validation.default_object(t.res.plural, new)
                    causes = validation.VALIDATORS[t.res.plural](new)
                else:
                    causes = validation.VALIDATORS[t.res.plural](new)
                if causes:
                    raise E.invalid(t.res.kind, t.name, causes, t.res.group)
            if dry_run(request):
                return json_response(new)
            result = await self.store_propose(cmds.Replace(
                resource=t.res.plural, namespace=t.namespace, name=t.name, obj=new, expected_rv=cur_rv,
                subresource="status" if t.subresource == "status" else ""))
            if result.ok:
                COMMITTED.set(result.revision)
                return json_response(result.obj)
            err = result_error(result)
            if isinstance(err, E.Conflict) and not client_rv and "Precondition" not in err.message:
                continue  # somebody else wrote in between: re-read and re-apply, as GuaranteedUpdate does
            raise err
        raise E.conflict(t.res.plural, t.name, t.res.group)

    async def delete(self, request: web.Request, user: User, t: Target) -> web.Response:
        body = await self.decoder.read_body(request, allow_empty=True)
        opts: Obj = {}
        if body is not None:
            opts = decode_small(body, schema.DELETE_OPTIONS)
        grace = opts.get("gracePeriodSeconds")
        if "gracePeriodSeconds" in request.query:
            grace = int_param(request.query, "gracePeriodSeconds", 0)
        if grace is not None and grace < 0:
            grace = 0
        pre = opts.get("preconditions") or {}
        current = self.store.read(lambda s: s.get(t.res.plural, t.namespace, t.name))
        authorize(user, "delete", t.res, t.namespace, t.name, "", current)
        if dry_run(request):
            await self.reads.consistent(request)
            if current is None:
                raise E.not_found(t.res.plural, t.name, t.res.group)
            return json_response(current)
        result = await self.propose(cmds.Delete(
            resource=t.res.plural, namespace=t.namespace, name=t.name, time=rfc3339(self.clock()),
            grace_period_s=grace, expected_uid=pre.get("uid") or "", expected_rv=pre.get("resourceVersion") or ""))
        return json_response(delete_answer(t.res, result.obj))

    async def delete_collection(self, request: web.Request, user: User, t: Target) -> web.Response:
        authorize(user, "deletecollection", t.res, t.namespace, "")
        labels, fields = selectors(request.query, t.res.plural)
        await self.store.linearizable_barrier()
        names = self.store.read(lambda s: [o["metadata"]["name"] for o in s.list_objects(t.res.plural, t.namespace)
                                           if labels.matches(o["metadata"].get("labels")) and fields.matches(o)])
        now = rfc3339(self.clock())
        items = []
        for name in names:
            result = await self.store_propose(cmds.Delete(resource=t.res.plural, namespace=t.namespace,
                                                                    name=name, time=now))
            if result.ok and result.obj is not None:
                items.append(result.obj)
        return json_response({"kind": t.res.list_kind, "apiVersion": t.res.api_version,
                              "metadata": {"resourceVersion": str(self.store.read(lambda s: s.revision))},
                              "items": items})

    async def bind(self, request: web.Request, user: User, t: Target) -> web.Response:
        authorize(user, "create", t.res, t.namespace, t.name, "binding")
        body = decode_small(await self.decoder.read_body(request), schema.BINDING)
        target = body.get("target") or {}
        node = target.get("name") or ""
        name = (body.get("metadata") or {}).get("name") or t.name
        if name != t.name:
            raise E.BadRequest(f"the name of the object ({name}) does not match the name on the URL ({t.name})")
        if not node:
            raise E.invalid("Binding", name, [E.required("target.name")])
        if target.get("kind") not in (None, "", "Node"):
            raise E.invalid("Binding", name, [E.not_supported("target.kind", target.get("kind"), ["Node"])])
        bmeta = body.get("metadata") or {}
        await self.propose(cmds.Bind(namespace=t.namespace, name=t.name, node_name=node,
                                      time=rfc3339(self.clock()), expected_uid=bmeta.get("uid") or "",
                                      annotations=dict(bmeta.get("annotations") or {})))
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201}, status=201)

    async def evict(self, request: web.Request, user: User, t: Target) -> web.Response:
        authorize(user, "create", t.res, t.namespace, t.name, "eviction")
        body = decode_small(await self.decoder.read_body(request, allow_empty=True) or {}, schema.EVICTION)
        grace = (body.get("deleteOptions") or {}).get("gracePeriodSeconds")
        if grace is not None and grace < 0:
            grace = 0
        await self.propose(cmds.Delete(resource="pods", namespace=t.namespace, name=t.name,
                                        time=rfc3339(self.clock()), grace_period_s=grace))
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201}, status=201)

    # ------------------------------------------------------------------------------- scale (RS)
    async def update_scale(self, request: web.Request, user: User, t: Target, body: Any) -> web.Response:
        body = decode_small(body, schema.SCALE)
        replicas = (body.get("spec") or {}).get("replicas")
        rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        return await self.set_replicas(request, user, t, replicas, rv)

    async def patch_scale(self, request: web.Request, user: User, t: Target, ctype: str,
                           body: Any) -> web.Response:
        await self.store.linearizable_barrier()
        current = self.store.read(lambda s: s.get(t.res.plural, t.namespace, t.name))
        if current is None:
            raise E.not_found(t.res.plural, t.name, t.res.group)
        try:
            scale = patching.apply_patch(ctype, scale_of(current), body)
        except patching.PatchError as exc:
            raise E.BadRequest(str(exc)) from exc
        scale = decode_small(scale, schema.SCALE)
        return await self.set_replicas(request, user, t, (scale.get("spec") or {}).get("replicas"), "")


    async def set_replicas(self, request: web.Request, user: User, t: Target, replicas: Any,
                            rv: str) -> web.Response:
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise E.invalid("Scale", t.name, [E.invalid_value("spec.replicas", replicas,
                                                              "must be greater than or equal to 0")],
                            "autoscaling")

        def mutate(current: Obj) -> Obj:
            new = dict(current)
            new["spec"] = dict(current.get("spec") or {})
            new["spec"]["replicas"] = replicas
            return new

        resp = await self.guaranteed_update(request, user, Target(t.res, t.namespace, t.name, ""), mutate, rv)
        obj = json.loads(resp.body) if isinstance(resp.body, (bytes, bytearray)) else None
        return json_response(scale_of(obj) if obj else {})


def delete_answer(res: Resource, obj: Obj | None) -> Obj | None:
    """What DELETE answers, as Kubernetes' registry does: pods and namespaces (`ReturnDeletedObject`, or
    still finalizing) give the object; any other object that is gone gives a success `Status` naming it."""
    if obj is None or res.plural in ("pods", "namespaces") or (obj.get("metadata") or {}).get("deletionTimestamp"):
        return obj
    meta = obj.get("metadata") or {}
    details: Obj = {"name": meta.get("name", "")}
    if res.group:
        details["group"] = res.group
    details["kind"] = res.plural
    details["uid"] = meta.get("uid", "")
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
