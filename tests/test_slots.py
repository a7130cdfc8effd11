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


LM = "http://lm.invalid/v1"


def one(slots: int) -> list[tuple[str, int]]:
    """A pool of one LM endpoint with ``slots`` slots."""
    return [(LM, slots)]


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
        pool = SlotPool(one(2), affinity_s=0.0)
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
        pool = SlotPool(one(1), affinity_s=0.0)
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
        pool = SlotPool(one(1), affinity_s=0.0)
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
        pool = SlotPool(one(slots), affinity_s=0.0, clock=clock)
        await pool.acquire("a")  # t=100
        clock.now = 102.0
        await pool.release("a")  # busy 2 s
        clock.now = 103.0
        await pool.acquire("b")  # idle 1 s
        clock.now = 104.0
        await pool.release("b")  # busy 1 s
        return await pool.stats()

    one_slot, two_slots = run(scenario(1)), run(scenario(2))
    # The calls held a slot 3 s of the 4 s from the first call to the last.
    assert one_slot["lm_slot_busy_share"] == pytest.approx(3 / 4)
    assert two_slots["lm_slot_busy_share"] == pytest.approx(3 / 8)
    assert one_slot["lm_calls_through_slots"] == 2 and one_slot["max_lm_calls_in_flight"] == 1


def test_busy_share_counts_overlapping_calls_on_several_slots():
    async def scenario():
        clock = Clock(0.0)  # a clock that starts at zero counts like any other
        pool = SlotPool(one(2), affinity_s=0.0, clock=clock)
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
    stats = run(SlotPool(one(3)).stats())
    assert stats == {
        "lm_slots": 3,
        "lm_calls_through_slots": 0,
        "max_lm_calls_in_flight": 0,
        "lm_slot_busy_share": 0,
        "lm_outage_seconds": 0.0,
        "lm_calls_by_endpoint": {LM: 0},
        "max_in_flight_by_endpoint": {LM: 0},
        "lm_down": [],
        "lm_down_since": None,
        "lm_down_for": 0.0,
    }


def test_a_call_still_in_flight_has_no_span_yet():
    async def scenario():
        clock = Clock(10.0)
        pool = SlotPool(one(1), clock=clock)
        await pool.acquire("a")
        clock.now = 11.0
        return await pool.stats()

    stats = run(scenario())
    assert stats["lm_slot_busy_share"] == 0 and stats["lm_calls_through_slots"] == 1


def test_busy_share_over_a_span_shorter_than_a_second():
    async def scenario():
        clock = Clock(5.0)
        pool = SlotPool(one(1), affinity_s=0.0, clock=clock)
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
        pool = SlotPool(one(1), affinity_s=0.2)
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
        pool = SlotPool(one(1), affinity_s=affinity_s)
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
        pool = SlotPool(one(1), affinity_s=0.05)
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
        pool = SlotPool(one(1))
        await pool.forget("nobody")
        await pool.acquire("a", "A")
        return await pool.stats()

    assert run(scenario())["lm_calls_through_slots"] == 1


def test_callers_that_name_no_holder_get_no_affinity():
    async def scenario():
        pool = SlotPool(one(1), affinity_s=5.0)
        await pool.acquire("a")
        waiting = asyncio.create_task(pool.acquire("b"))
        await settle()
        await pool.release("a")
        await settle()
        return waiting.done()

    assert run(scenario())


def test_a_holder_with_two_kept_slots_gets_both_back():
    async def scenario():
        pool = SlotPool(one(2), affinity_s=5.0)
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
        pool = SlotPool(one(2), affinity_s=0.4)
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
        pool = SlotPool(one(1), affinity_s=0.0)
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
        pool = SlotPool(one(1), affinity_s=30.0)
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
        pool = SlotPool(one(2), affinity_s=30.0)
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
        pool = SlotPool(one(1), affinity_s=0.05)
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
    slots = LMSlots.options(name="cap", namespace="slots-test").remote(one(2), 0.0)  # noqa: F841 - the handle keeps it alive
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
    slots = LMSlots.options(name="affinity", namespace="slots-test").remote(one(1), 0.5)
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
    slots = LMSlots.options(name="cached", namespace="slots-test").remote([(fake.base_url, 1)], 0.0)
    settings = LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion")
    lm = build_lm(settings, request_hooks=[SlotHook("cached", "slots-test")])
    with dspy.context(lm=lm, adapter=build_adapter("completion")):
        for question in ("Who built the ark?", "Who built the ark?", "Who slew Goliath?", "Who built the ark?"):
            dspy.Predict(AnswerBibleQuestion)(question=question, passages="")
    stats = ray.get(slots.stats.remote())
    assert len(fake.requests) == stats["lm_calls_through_slots"] == 2  # the two distinct questions
    assert stats["lm_calls_by_endpoint"] == {fake.base_url: 2}
    usage = meter_of(lm).usage
    assert (usage.lm_calls, usage.lm_cache_hits) == (4, 2)
    assert usage.lm_calls - usage.lm_cache_hits == stats["lm_calls_through_slots"]
    assert usage == LMUsage(4, 2, 40, 12)


class FakeTime:
    """A FAKE clock with an asyncio sleep on it: sleepers wake only when the test moves the clock past
    their time (``advance``), so a health check's backoff is seen, not waited for."""

    def __init__(self, now: float = 1000.0):
        self.now = now
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, asyncio.Future]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        waker = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, waker))
        await waker

    async def advance(self, seconds: float) -> None:
        """Move the clock in small steps, waking each sleeper due, and let what it wakes run."""
        end = self.now + seconds
        await settle()  # a task that is about to sleep gets to
        while True:
            due = [wake for wake, _ in self._sleepers if wake <= end]
            self.now = min(due) if due else end
            for entry in [entry for entry in self._sleepers if entry[0] <= self.now]:
                self._sleepers.remove(entry)
                entry[1].set_result(None)
            await settle()
            if not due:
                return


class FakeLMs:
    """FAKE health checks: an endpoint answers when it is in ``answering``; every check is recorded."""

    def __init__(self, *answering: str):
        self.answering = set(answering)
        self.checks: list[tuple[float, str]] = []
        self.clock: FakeTime | None = None

    async def __call__(self, lm_base: str) -> bool:
        self.checks.append((self.clock.now if self.clock else 0.0, lm_base))
        return lm_base in self.answering


A, B = "http://a.invalid/v1", "http://b.invalid/v1"


def pool_of(endpoints, lms: FakeLMs, time_: FakeTime, backoff=(0.5, 10.0)) -> SlotPool:
    lms.clock = time_
    return SlotPool(endpoints, affinity_s=0.0, clock=time_, health_check=lms, backoff=backoff, sleep=time_.sleep,
                    wall=lambda: time_.now + 1_700_000_000)  # fmt: skip


def test_two_endpoints_each_keep_to_their_own_slots():
    async def scenario():
        time_ = FakeTime()
        pool = pool_of([(A, 1), (B, 2)], FakeLMs(A, B), time_)
        first = [await pool.acquire(f"c{n}", f"h{n}") for n in range(3)]
        fourth = asyncio.create_task(pool.acquire("c3", "h3"))
        await settle()
        assert not fourth.done()  # 1 + 2 slots, 3 in flight: the fourth waits
        await pool.release("c0", "h0")  # A's one slot frees: it goes to the waiter
        await settle()
        return first, fourth.result(), await pool.stats()

    first, fourth, stats = run(scenario())
    assert first == [B, A, B]  # each call to the endpoint with the most free slots (the first of a tie)
    assert fourth == B  # the slot c0 freed
    assert stats["lm_slots"] == 3 and stats["max_lm_calls_in_flight"] == 3
    assert stats["lm_calls_by_endpoint"] == {A: 1, B: 3}
    assert stats["max_in_flight_by_endpoint"] == {A: 1, B: 2}


def test_a_holder_goes_back_to_its_last_endpoint_when_it_has_a_free_slot():
    async def scenario():
        pool = pool_of([(A, 2), (B, 2)], FakeLMs(A, B), FakeTime())
        taken = await pool.acquire("x1", "X")  # both have 2 free: the first in order
        other = await pool.acquire("y1", "Y")  # now the other has more free
        await pool.release("x1", "X")
        again = [await pool.acquire(f"x{n}", "X") for n in (2, 3)]  # X's endpoint first, then the other
        return taken, other, again

    taken, other, again = run(scenario())
    assert (taken, other) == (A, B)
    assert again == [A, A]  # A had both slots free again: X stays with it


def test_an_unreachable_endpoint_is_down_until_its_health_check_answers_with_backoff():
    async def scenario():
        time_, lms = FakeTime(), FakeLMs(B)  # A is dead
        pool = pool_of([(A, 1), (B, 1)], lms, time_)
        assert await pool.acquire("a1", "X") == A
        down_at = time_.now
        await pool.release("a1", "X", unreachable=True)
        routed = [await pool.acquire("x2", "X")]  # A is DOWN: the call goes to B, though X came from A
        await pool.release("x2", "X")
        stats_down = await pool.stats()
        await time_.advance(0.5 + 1.0 + 2.0)  # three checks, A still dead
        lms.answering.add(A)
        await time_.advance(4.0)  # the fourth check answers
        routed += [await pool.acquire("x3", "X"), await pool.acquire("y3", "Y")]
        return down_at, routed, stats_down, lms.checks, await pool.stats()

    down_at, routed, stats_down, checks, stats = run(scenario())
    assert routed == [B, B, A]  # after A is UP, X keeps to B and Y gets A's slot
    assert [at - down_at for at, _ in checks] == [0.5, 1.5, 3.5, 7.5] and {base for _, base in checks} == {A}
    assert stats_down["lm_down"] == [A] and stats_down["lm_down_since"] is None  # B still answers: no pause
    assert stats["lm_down"] == [] and stats["lm_outage_seconds"] == 0.0


def test_backoff_doubles_up_to_its_most():
    async def scenario():
        time_, lms = FakeTime(), FakeLMs()
        pool = pool_of([(A, 1)], lms, time_, backoff=(1.0, 4.0))
        await pool.acquire("a1")
        await pool.release("a1", unreachable=True)
        await time_.advance(1 + 2 + 4 + 4 + 4)
        return time_.sleeps, len(lms.checks)

    assert run(scenario()) == ([1.0, 2.0, 4.0, 4.0, 4.0, 4.0], 5)  # the sixth sleep is under way


def test_while_every_endpoint_is_down_calls_wait_and_go_on_when_one_answers():
    async def scenario():
        time_, lms = FakeTime(), FakeLMs()
        pool = pool_of([(A, 2), (B, 1)], lms, time_)
        bases = [await pool.acquire(name, name) for name in ("p", "q", "r")]
        down_at = time_.now
        for name in ("p", "q", "r"):  # the three requests in flight fail: both servers went away
            await pool.release(name, name, unreachable=True)
        waiting = [asyncio.create_task(pool.acquire(f"{name}2", name)) for name in ("p", "q", "r")]
        await time_.advance(30.0)
        paused = [task.done() for task in waiting]
        stats_paused = await pool.stats()
        lms.answering.add(B)  # B comes back (A does not)
        await time_.advance(10.0)
        done = [task.done() for task in waiting]
        back_at = [at for at, base in lms.checks if base == B][-1]
        return bases, down_at, paused, stats_paused, done, [t.result() for t in waiting if t.done()], back_at, pool

    bases, down_at, paused, stats_paused, done, routed, back_at, pool = run(scenario())
    assert sorted(bases) == [A, A, B]
    assert paused == [False, False, False]  # the pause: nothing goes out while every endpoint is DOWN
    assert sorted(stats_paused["lm_down"]) == [A, B]
    assert stats_paused["lm_down_for"] == 30.0 and stats_paused["lm_down_since"] == down_at + 1_700_000_000
    assert done.count(True) == 1 and routed == [B]  # B's one slot: one waiter goes, two wait on
    stats = run(pool.stats())
    assert stats["lm_down"] == [A] and stats["lm_down_since"] is None and stats["lm_down_for"] == 0.0
    assert stats["lm_outage_seconds"] == back_at - down_at


def test_a_health_check_that_raises_is_not_an_answer():
    async def scenario():
        time_, calls = FakeTime(), []

        async def broken(lm_base: str) -> bool:
            calls.append(lm_base)
            if len(calls) == 1:
                raise OSError("health check could not run")
            return True

        pool = SlotPool([(A, 1)], affinity_s=0.0, clock=time_, health_check=broken, sleep=time_.sleep)
        await pool.acquire("a")
        await pool.release("a", unreachable=True)
        waiting = asyncio.create_task(pool.acquire("b"))
        await time_.advance(0.5)
        after_first = waiting.done()
        await time_.advance(1.0)
        return after_first, waiting.done(), len(calls)

    assert run(scenario()) == (False, True, 2)


def test_a_slot_kept_on_an_endpoint_that_goes_down_is_dropped():
    async def scenario():
        time_ = FakeTime()
        pool = SlotPool([(A, 1), (B, 1)], affinity_s=30.0, clock=time_, health_check=FakeLMs(B), sleep=time_.sleep)
        assert await pool.acquire("a1", "X") == A
        assert await pool.acquire("b1", "Y") == B
        waiting = asyncio.create_task(pool.acquire("z1", "Z"))
        await settle()
        await pool.release("a1", "X")  # kept for X on A, Z waits
        await pool.release("b1", "Y", unreachable=True)  # B is DOWN: Y's slot is not kept
        await settle()
        kept = not waiting.done()
        back = asyncio.create_task(pool.acquire("x2", "X"))  # X takes its kept slot on A
        await settle()
        return kept, back.result(), waiting.done()

    assert run(scenario()) == (True, A, False)
