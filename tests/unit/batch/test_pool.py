"""The job pool the lanes share: free slots, shortest queue, hand-backs, the end."""

from __future__ import annotations

import threading


from provisioner.batch.pool import JobFailure, JobPool
from tests.unit.batch.cases import job


def pool_of(count: int, depth: int, *lanes: str) -> JobPool:
    pool = JobPool([job(index) for index in range(1, count + 1)], depth)
    for lane in lanes:
        pool.join(lane)
    return pool


def index(taken) -> int | None:
    return None if taken is None else taken.index


def test_a_lane_takes_only_while_it_has_a_free_slot():
    pool = pool_of(3, 2, "a")
    assert [index(pool.take("a")) for _ in range(3)] == [1, 2, None]
    pool.finish("a", job(1))
    assert index(pool.take("a")) == 3
    assert (pool.in_flight("a"), pool.pending()) == (2, 0)


def test_a_lane_that_has_not_joined_takes_nothing():
    pool = pool_of(2, 2)
    assert pool.take("a") is None
    assert pool.pending() == 2


def test_each_job_goes_to_the_lane_with_the_shortest_queue():
    pool = pool_of(5, 2, "a", "b")
    assert index(pool.take("a")) == 1
    assert pool.take("a") is None  # b has fewer in flight
    assert index(pool.take("b")) == 2
    assert index(pool.take("a")) == 3  # a tie: either may take
    assert pool.take("a") is None  # a is full
    assert index(pool.take("b")) == 4
    assert pool.take("b") is None
    assert pool.pending() == 1


def test_a_leaving_lane_hands_its_jobs_back_to_the_front_in_order():
    pool = pool_of(4, 3, "a")
    taken = [pool.take("a") for _ in range(3)]
    pool.finish("a", taken[1])
    pool.join("b")
    assert [item.index for item in pool.leave("a")] == [1, 3]
    assert pool.requeued == 2
    assert pool.take("a") is None  # it left
    assert [index(pool.take("b")) for _ in range(3)] == [1, 3, 4]


def test_the_pool_settles_when_every_job_ended():
    pool = pool_of(2, 2, "a")
    first, second = pool.take("a"), pool.take("a")
    pool.finish("a", first)
    assert not pool.settled()
    pool.fail("a", second, "ComfyUI refused it")
    assert pool.settled()
    assert pool.finished == {1: "a"}
    assert pool.failures == {2: JobFailure(second, "a", "ComfyUI refused it")}
    assert pool.unrun() == []


def test_the_pool_settles_when_the_last_lane_leaves_and_the_rest_is_unrun():
    pool = pool_of(3, 1, "a", "b")
    pool.take("a")
    pool.take("b")
    pool.leave("a")
    assert not pool.settled()  # b is still there for job 1 and 3
    pool.leave("b")
    assert pool.settled()
    assert [item.index for item in pool.unrun()] == [1, 2, 3]
    assert pool.requeued == 2


def test_stop_queues_nothing_more_and_settles_once_running_jobs_end():
    pool = pool_of(3, 2, "a")
    running = pool.take("a")
    pool.stop()
    assert pool.take("a") is None
    assert not pool.settled()
    pool.finish("a", running)
    assert pool.settled()
    assert [item.index for item in pool.unrun()] == [2, 3]


def test_jobs_withdrawn_after_stop_are_unrun():
    pool = pool_of(3, 2, "a")
    pool.take("a")
    pool.stop()
    assert [item.index for item in pool.leave("a")] == [1]  # the lane withdrew job 1 (Ctrl-C)
    assert pool.requeued == 0
    assert [item.index for item in pool.unrun()] == [1, 2, 3]


def test_wait_times_out_unsettled_and_returns_at_once_when_settled():
    pool = pool_of(1, 1, "a")
    taken = pool.take("a")
    assert pool.wait(0.01) is False
    pool.finish("a", taken)
    assert pool.wait(10) is True


def test_wait_wakes_when_another_thread_ends_the_last_job():
    pool = pool_of(1, 1, "a")
    taken = pool.take("a")
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(pool.wait(10)))
    waiter.start()
    pool.finish("a", taken)
    waiter.join(5)
    assert result == [True]
