"""kubectl and the official Python client, unchanged, against a cluster on the etcd engine: a few of the
real-client tests of `test_kubectl.py` and `test_python_client.py` run again on `store.engine: etcd` (the same
module cluster shape: 3 masters, each with its etcd member, 2 kubelets with the process runtime), so the
scheduler and the kubelets run through the etcd engine too."""

from __future__ import annotations

import pytest

from tests.clients.conftest import need_kubectl
from tests.clients.test_kubectl import test_create_apply_replace as _create_apply_replace
from tests.clients.test_kubectl import test_delete_waits_until_gone as _delete_waits_until_gone
from tests.clients.test_python_client import (
    api,  # noqa: F401  (the module's Python client fixture)
    test_pods_crud,  # noqa: F401
    test_watch_with_and_without_timeout,  # noqa: F401
)

pytestmark = pytest.mark.slow
STORE_ENGINE = "etcd"
STORE_SETTINGS = {"watch_history_max": 200}  # as test_python_client's: its watch test outruns the history

test_kubectl_create_apply_replace = need_kubectl(_create_apply_replace)
test_kubectl_delete_waits_until_gone = need_kubectl(_delete_waits_until_gone)
