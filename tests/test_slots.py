"""sweeps.slots: the LM calls in flight never exceed the slots, a freed slot stays with its holder, the slot
figures are what the calls' times say, and a cache hit holds no slot.

The semaphore (``SlotPool``) is driven in-process on a clock the test sets; the Ray actor (``LMSlots``) and
the request hook that takes a slot around every request an LM engine sends run on a real local Ray
instance (against a FAKE scripted LM server where an LM is needed)."""

from __future__ import annotations

import asyncio
import inspect
import pickle
import threading
import time

import dspy
import pytest
import ray

from bibleqa.dspy_lm import build_adapter, build_lm
from bibleqa.lm import LM_STUDIO_SLOTS, LMSettings, lm_studio
from bibleqa.local_lm import BUNDLED_LM_SLOTS, bundled_lm
from bibleqa.program import AnswerBibleQuestion
from bibleqa.usage import LMUsage, meter_of
from sweeps.slots import AFFINITY_S, LMSlots, SlotHook, SlotPool, affinity_for
from tests.fakes import completion_body


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(coroutine):
    """Run a scenario; one that waits for a slot that never comes fails instead of hanging."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout=5))


async def settle() -> None:
    """Let every task that can run, run."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_each_server_brings_its_slots_and_affinity_follows_them():
    assert lm_studio().slots == LMSettings().slots == LM_STUDIO_SLOTS == 4
    assert inspect.signature(bundled_lm).parameters["slots"].default == BUNDLED_LM_SLOTS == 1
    assert affinity_for(1) == AFFINITY_S > 0
    assert affinity_for(2) == affinity_for(4) == 0.0


def test_a_call_beyond_the_slots_waits_for_a_release():
    async def scenario():
        pool = SlotPool(2, affinity_s=0.0)
        await pool.acquire("a")
        await pool.acquire("b")
        third = asyncio.create_task(pool.acquire("c"))
        await settle()
        assert not third.done()  # two slots, two calls in flight: the third waits
        await pool.release("a")
        await settle()
        assert third.done()
        fourth = asyncio.create_task(pool.acquire("d"))
        await settle()
        assert not fourth.done()
        await pool.release("b")
        await pool.release("c")
        await settle()
        assert fourth.done()
        await pool.release("d")
        fifth = asyncio.create_task(pool.acquire("e"))
        sixth = asyncio.create_task(pool.acquire("f"))
        await settle()
        assert fifth.done() and sixth.done()  # both slots free again
        assert pool.in_flight == 2
        seventh = asyncio.create_task(pool.acquire("g"))
        await settle()
        assert not seventh.done()  # and both taken again
        seventh.cancel()
        return await pool.stats()

    stats = run(scenario())
    assert stats["lm_calls_through_slots"] == 6
    assert stats["max_lm_calls_in_flight"] == 2
    assert stats["lm_slots"] == 2


def test_releasing_an_unknown_call_frees_nothing():
    async def scenario():
        pool = SlotPool(1, affinity_s=0.0)
        await pool.release("never-acquired")
        await pool.acquire("a")
        second = asyncio.create_task(pool.acquire("b"))
        await settle()
        waiting = not second.done()
        await pool.release("a")
        await pool.release("a")  # a second release of the same call is ignored too
        await settle()
        third = asyncio.create_task(pool.acquire("c"))
        await settle()
        return waiting, second.done(), third.done(), await pool.stats()

    waiting, second_done, third_done, stats = run(scenario())
    assert waiting and second_done and not third_done
    assert stats["max_lm_calls_in_flight"] == 1


def test_a_cancelled_waiter_is_skipped():
    async def scenario():
        pool = SlotPool(1, affinity_s=0.0)
        await pool.acquire("a")
        gone = asyncio.create_task(pool.acquire("gone"))
        waiting = asyncio.create_task(pool.acquire("b"))
        await settle()
        gone.cancel()
        await settle()
        await pool.release("a")
        await settle()
        return waiting.done()

    assert run(scenario())  # the slot went to the waiter still there, not to the cancelled one


def test_busy_share_is_busy_slot_time_over_slots_times_the_span():
    async def scenario(slots: int):
        clock = Clock(100.0)
        pool = SlotPool(slots, affinity_s=0.0, clock=clock)
        await pool.acquire("a")  # t=100
        clock.now = 102.0
        await pool.release("a")  # busy 2 s
        clock.now = 103.0
        await pool.acquire("b")  # idle 1 s
        clock.now = 104.0
        await pool.release("b")  # busy 1 s
        return await pool.stats()

    one, two = run(scenario(1)), run(scenario(2))
    # The calls held a slot 3 s of the 4 s from the first call to the last.
    assert one["lm_slot_busy_share"] == pytest.approx(3 / 4)
    assert two["lm_slot_busy_share"] == pytest.approx(3 / 8)
    assert one["lm_calls_through_slots"] == 2 and one["max_lm_calls_in_flight"] == 1


def test_busy_share_counts_overlapping_calls_on_several_slots():
    async def scenario():
        clock = Clock(0.0)  # a clock that starts at zero counts like any other
        pool = SlotPool(2, affinity_s=0.0, clock=clock)
        await pool.acquire("a")  # t=0
        clock.now = 1.0
        await pool.acquire("b")  # t=1
        clock.now = 3.0
        await pool.release("a")  # a held 3 s
        clock.now = 4.0
        await pool.release("b")  # b held 3 s
        return await pool.stats()

    stats = run(scenario())
    assert stats["lm_slot_busy_share"] == pytest.approx(6 / (2 * 4))
    assert stats["max_lm_calls_in_flight"] == 2


def test_no_call_no_share():
    stats = run(SlotPool(3).stats())
    assert stats == {"lm_slots": 3, "lm_calls_through_slots": 0, "max_lm_calls_in_flight": 0, "lm_slot_busy_share": 0}


def test_a_call_still_in_flight_has_no_span_yet():
    async def scenario():
        clock = Clock(10.0)
        pool = SlotPool(1, clock=clock)
        await pool.acquire("a")
        clock.now = 11.0
        return await pool.stats()

    stats = run(scenario())
    assert stats["lm_slot_busy_share"] == 0 and stats["lm_calls_through_slots"] == 1


def test_busy_share_over_a_span_shorter_than_a_second():
    async def scenario():
        clock = Clock(5.0)
        pool = SlotPool(1, affinity_s=0.0, clock=clock)
        await pool.acquire("a")
        clock.now = 5.25
        await pool.release("a")
        clock.now = 5.5
        await pool.acquire("b")
        clock.now = 5.75
        await pool.release("b")
        return await pool.stats()

    assert run(scenario())["lm_slot_busy_share"] == pytest.approx(0.5 / 0.75)


def test_a_freed_slot_is_kept_for_its_holder_only_while_others_wait():
    async def scenario():
        pool = SlotPool(1, affinity_s=0.2)
        await pool.acquire("a1", "A")
        await pool.release("a1", "A")  # nobody waits: the slot is simply free
        await asyncio.wait_for(pool.acquire("b1", "B"), timeout=0.1)  # so B gets it at once, not after 0.2 s
        waiting_a = asyncio.create_task(pool.acquire("a2", "A"))
        await settle()
        assert not waiting_a.done()
        await pool.release("b1", "B")  # A waits: the slot is kept for B for 0.2 s
        await settle()
        kept = not waiting_a.done()
        await pool.acquire("b2", "B")  # B comes back at once and gets its slot
        await pool.release("b2", "B")  # B does not come back: after 0.2 s the slot goes to A
        await settle()
        still_kept = not waiting_a.done()
        await asyncio.wait_for(waiting_a, timeout=2)
        return kept, still_kept, await pool.stats()

    kept, still_kept, stats = run(scenario())
    assert kept and still_kept
    assert stats["max_lm_calls_in_flight"] == 1 and stats["lm_calls_through_slots"] == 4


def test_without_affinity_or_holder_a_freed_slot_goes_to_the_next_waiter_at_once():
    async def scenario(affinity_s: float, holder: str):
        pool = SlotPool(1, affinity_s=affinity_s)
        await pool.acquire("a1", holder)
        waiting = asyncio.create_task(pool.acquire("b1", "B"))
        await settle()
        await pool.release("a1", holder)
        await settle()
        return waiting.done()

    assert run(scenario(0.0, "A"))
    assert run(scenario(5.0, ""))


def test_after_a_kept_slot_expires_its_holder_waits_like_anyone():
    async def scenario():
        pool = SlotPool(1, affinity_s=0.05)
        await pool.acquire("a1", "A")
        waiting_b = asyncio.create_task(pool.acquire("b1", "B"))
        await settle()
        await pool.release("a1", "A")  # kept for A for 0.05 s; A does not come back in time
        await asyncio.sleep(0.2)
        assert waiting_b.done()  # B has the slot now
        back = asyncio.create_task(pool.acquire("a2", "A"))
        await settle()
        waited = not back.done()  # A finds no slot kept for it any more
        await pool.release("b1", "B")
        await asyncio.wait_for(back, timeout=1)
        return waited, await pool.stats()

    waited, stats = run(scenario())
    assert waited and stats["max_lm_calls_in_flight"] == 1


def test_forgetting_a_holder_with_nothing_kept_is_harmless():
    async def scenario():
        pool = SlotPool(1)
        await pool.forget("nobody")
        await pool.acquire("a", "A")
        return await pool.stats()

    assert run(scenario())["lm_calls_through_slots"] == 1


def test_callers_that_name_no_holder_get_no_affinity():
    async def scenario():
        pool = SlotPool(1, affinity_s=5.0)
        await pool.acquire("a")
        waiting = asyncio.create_task(pool.acquire("b"))
        await settle()
        await pool.release("a")
        await settle()
        return waiting.done()

    assert run(scenario())


def test_a_holder_with_two_kept_slots_gets_both_back():
    async def scenario():
        pool = SlotPool(2, affinity_s=5.0)
        await pool.acquire("a1", "A")
        await pool.acquire("a2", "A")  # one trial, two calls at once (eval_threads > 1)
        waiting = [asyncio.create_task(pool.acquire(f"b{n}", "B")) for n in (1, 2)]
        await settle()
        await pool.release("a1", "A")
        await pool.release("a2", "A")  # both slots kept for A while B waits
        await asyncio.wait_for(pool.acquire("a3", "A"), timeout=0.1)
        await asyncio.wait_for(pool.acquire("a4", "A"), timeout=0.1)  # the second kept slot too
        return [task.done() for task in waiting], await pool.stats()

    done, stats = run(scenario())
    assert done == [False, False] and stats["max_lm_calls_in_flight"] == 2


def test_when_one_of_two_kept_slots_expires_the_other_is_still_kept():
    async def scenario():
        pool = SlotPool(2, affinity_s=0.4)
        await pool.acquire("a1", "A")
        await pool.acquire("a2", "A")
        waiting = [asyncio.create_task(pool.acquire(f"b{n}", "B")) for n in (1, 2)]
        await settle()
        await pool.release("a1", "A")  # kept until t=0.4
        await asyncio.sleep(0.2)
        await pool.release("a2", "A")  # kept until t=0.6
        await asyncio.sleep(0.3)  # t=0.5: the first has gone to B, the second is still A's
        first_went_to_b = waiting[0].done()
        await asyncio.wait_for(pool.acquire("a3", "A"), timeout=0.05)
        return first_went_to_b, waiting[1].done()

    assert run(scenario()) == (True, False)


def test_without_affinity_the_waiter_goes_first_even_if_the_holder_comes_straight_back():
    async def scenario():
        pool = SlotPool(1, affinity_s=0.0)
        await pool.acquire("a1", "A")
        waiting = asyncio.create_task(pool.acquire("b1", "B"))
        await settle()
        await pool.release("a1", "A")
        back = asyncio.create_task(pool.acquire("a2", "A"))  # A asks again before B has run
        await settle()
        return waiting.done(), back.done()

    assert run(scenario()) == (True, False)


def test_forget_hands_a_kept_slot_to_the_waiters_at_once():
    async def scenario():
        pool = SlotPool(1, affinity_s=30.0)
        await pool.acquire("a1", "A")
        waiting = asyncio.create_task(pool.acquire("b1", "B"))
        await settle()
        await pool.release("a1", "A")  # kept for A for 30 s
        await settle()
        kept = not waiting.done()
        await pool.forget("A")  # A's trial ended
        await settle()
        return kept, waiting.done()

    assert run(scenario()) == (True, True)


def test_dropping_a_lost_holder_frees_its_calls_in_flight_and_ends_its_waits():
    """A trial lost mid-call (its node died) never releases: ``drop`` frees what it held, the next waiter gets
    it, the lost holder's own waits end, and the pool's count of free slots comes out right."""

    async def scenario():
        pool = SlotPool(2, affinity_s=30.0)
        await pool.acquire("a1", "A")
        await pool.acquire("a2", "A")  # A holds both slots
        lost_wait = asyncio.create_task(pool.acquire("a3", "A"))
        other = asyncio.create_task(pool.acquire("b1", "B"))
        await settle()
        blocked = not other.done()
        await pool.drop("A")  # A's node is gone: it will never release a1 or a2
        await settle()
        got_one = other.done() and not other.cancelled()
        await pool.acquire("c1", "C")  # the second slot of A is free too, kept for no one
        stats = await pool.stats()
        return blocked, got_one, lost_wait.cancelled(), pool.in_flight, stats["max_lm_calls_in_flight"]

    assert run(scenario()) == (True, True, True, 2, 2)


def test_an_expired_slot_with_no_waiter_left_becomes_free():
    async def scenario():
        pool = SlotPool(1, affinity_s=0.05)
        await pool.acquire("a1", "A")
        waiting = asyncio.create_task(pool.acquire("b1", "B"))
        await settle()
        await pool.release("a1", "A")  # kept for A while B waits
        waiting.cancel()  # B gives up
        await asyncio.sleep(0.2)  # the kept slot expires: nobody waits, so it is free
        await asyncio.wait_for(pool.acquire("c1", "C"), timeout=1)
        return True

    assert run(scenario())


def test_the_hook_pickles_as_its_names_only():
    hook = SlotHook("slots-actor", "a-namespace", holder="trial-7")
    hook._actor = object()  # a live handle is never pickled
    restored = pickle.loads(pickle.dumps(hook))
    assert (restored.actor_name, restored.namespace, restored.holder) == ("slots-actor", "a-namespace", "trial-7")
    assert restored._actor is None
    assert SlotHook("x").holder != SlotHook("x").holder  # one holder per trial's LM


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, namespace="slots-test")
    yield
    ray.shutdown()


@pytest.mark.ray
def test_requests_through_the_hooks_never_exceed_the_actors_slots(local_ray):
    slots = LMSlots.options(name="cap", namespace="slots-test").remote(2, 0.0)  # noqa: F841 - the handle keeps it alive
    hooks = [SlotHook("cap", "slots-test") for _ in range(4)]
    in_flight, most, lock = [0], [0], threading.Lock()

    def calls(hook: SlotHook, offset: int) -> None:
        for index in range(5):
            with hook.around_request(f"{offset}-{index}"):
                with lock:  # what an LM server would count: the requests between start and end
                    in_flight[0] += 1
                    most[0] = max(most[0], in_flight[0])
                time.sleep(0.05)
                with lock:
                    in_flight[0] -= 1
        hook.done()

    threads = [threading.Thread(target=calls, args=(hook, n)) for n, hook in enumerate(hooks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = ray.get(ray.get_actor("cap", namespace="slots-test").stats.remote())
    assert most[0] == 2  # four threads, two slots: never more than two calls at once, and two did overlap
    assert stats["lm_calls_through_slots"] == 20
    assert stats["max_lm_calls_in_flight"] == 2


@pytest.mark.ray
def test_the_actor_keeps_a_freed_slot_for_its_holder(local_ray):
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


@pytest.mark.ray
def test_a_cache_hit_holds_no_slot_and_every_request_holds_one(local_ray, fake_lm_server):
    fake = fake_lm_server([(200, completion_body(" Noah\nReferences: Genesis 6:14"))])
    slots = LMSlots.options(name="cached", namespace="slots-test").remote(1, 0.0)
    settings = LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion")
    lm = build_lm(settings, request_hooks=[SlotHook("cached", "slots-test")])
    with dspy.context(lm=lm, adapter=build_adapter("completion")):
        for question in ("Who built the ark?", "Who built the ark?", "Who slew Goliath?", "Who built the ark?"):
            dspy.Predict(AnswerBibleQuestion)(question=question, passages="")
    stats = ray.get(slots.stats.remote())
    assert len(fake.requests) == stats["lm_calls_through_slots"] == 2  # the two distinct questions
    usage = meter_of(lm).usage
    assert (usage.lm_calls, usage.lm_cache_hits) == (4, 2)
    assert usage.lm_calls - usage.lm_cache_hits == stats["lm_calls_through_slots"]
    assert usage == LMUsage(4, 2, 40, 12)
