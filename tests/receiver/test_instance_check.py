"""The receiver records the Clerk instance deliveries come from once per process; a try the
database could not take is made again, by a later delivery, after a while (not by every
delivery: each try may wait the whole database timeout)."""

from __future__ import annotations

import socket
import time

from pymongo import MongoClient

from clerksync.receiver.instance import InstanceCheck
from clerksync.store.database import Store
from clerksync.store.instance import bound_instance

INSTANCE = "ins_2receiverinstancecheck000"


def test_recorded_once_and_tried_again_after_a_failure(store: Store) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    away = Store(MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=200), "x")
    target = {"store": away}
    check = InstanceCheck(lambda: target["store"], db_timeout=0.3, retry=0.5)

    assert check.due(INSTANCE)
    assert not check.due(INSTANCE)  # one try at a time
    check.learn(INSTANCE)  # the database is away: the try fails
    assert not check.due(INSTANCE)  # not by the very next delivery
    time.sleep(0.6)
    target["store"] = store  # the database is back
    assert check.due(INSTANCE)
    check.learn(INSTANCE)
    bound = bound_instance(store)
    assert bound is not None and bound["instanceId"] == INSTANCE
    assert not check.due(INSTANCE)  # recorded: never again in this process
    assert not InstanceCheck(lambda: store, 1.0).due("ins_clerksync_local")  # `send`'s own
    away.client.close()
