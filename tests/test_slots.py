"""sweeps.slots: the LM calls in flight never exceed the slots, and a freed slot stays with its holder."""

from __future__ import annotations

import threading
import time

import pytest
import ray

from sweeps.slots import LMSlots, SlotCallback


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, namespace="slots-test")
    yield
    ray.shutdown()


def test_calls_in_flight_never_exceed_the_slots(local_ray):
    slots = LMSlots.options(name="cap", namespace="slots-test").remote(2)  # noqa: F841 - the handle keeps it alive
    callbacks = [SlotCallback("cap", "slots-test") for _ in range(4)]

    def calls(callback: SlotCallback, offset: int) -> None:
        for index in range(5):
            call_id = f"{offset}-{index}"
            callback.on_lm_start(call_id, None, {})
            time.sleep(0.02)
            callback.on_lm_end(call_id, None)

    threads = [threading.Thread(target=calls, args=(callback, n)) for n, callback in enumerate(callbacks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = ray.get(ray.get_actor("cap", namespace="slots-test").stats.remote())
    assert stats["lm_calls_through_slots"] == 20
    assert stats["max_lm_calls_in_flight"] == 2
    assert 0 < stats["lm_slot_busy_share"] <= 1


def test_a_freed_slot_stays_with_its_holder_while_it_comes_back(local_ray):
    slots = LMSlots.options(name="affinity", namespace="slots-test").remote(1, 0.5)
    ray.get(slots.acquire.remote("a1", "A"))
    waiting_b = slots.acquire.remote("b1", "B")  # B queues behind A
    time.sleep(0.1)
    ray.get(slots.release.remote("a1", "A"))
    ray.get(slots.acquire.remote("a2", "A"), timeout=2)  # A comes back at once and gets its slot again
    ready, _ = ray.wait([waiting_b], timeout=0.2)
    assert not ready  # B still waits: the one slot is A's
    ray.get(slots.release.remote("a2", "A"))  # A does not come back: after 0.5 s the slot goes to B
    ray.get(waiting_b, timeout=3)
    ray.get(slots.release.remote("b1", "B"))
    assert ray.get(slots.stats.remote())["max_lm_calls_in_flight"] == 1
