"""The brokers' fixes (config/broker.py). The embedded broker under concurrent producers and
a consumer: every message arrives whole; kombu's own filesystem transport fails this (its
consumer moves a file away while the producer is still writing it, reads it empty, and
raises). Redis going away under a worker mid-task: the worker is not stopped."""

import threading
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Queue

from tests.harness.redis import RedisServer

MESSAGES_PER_PRODUCER = 100


@pytest.mark.parametrize("transport", ["config.broker:Transport"])
def test_messages_published_while_consumed_all_arrive_whole(tmp_path: Path, transport: str) -> None:
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        # kombu keeps exchange bindings here; its default is ./control.
        "control_folder": str(tmp_path / "control"),
        "polling_interval": 0,
    }
    queue = Queue("work")
    received: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def produce(offset: int) -> None:
        with Connection("filesystem://", transport=transport, transport_options=options) as conn:
            producer = conn.Producer()
            for number in range(offset, offset + MESSAGES_PER_PRODUCER):
                producer.publish(
                    {"n": number, "pad": "x" * 1_000_000}, routing_key="work", declare=[queue]
                )

    def consume() -> None:
        with Connection("filesystem://", transport=transport, transport_options=options) as conn:
            simple = conn.SimpleQueue("work")
            while len(received) < 2 * MESSAGES_PER_PRODUCER and not done.is_set():
                try:
                    message = simple.get(timeout=0.05)
                except simple.Empty:
                    continue
                except BaseException as error:  # what kombu's own transport raises here
                    errors.append(error)
                    return
                received.append(message.payload["n"])
                message.ack()

    consumer = threading.Thread(target=consume)
    consumer.start()
    producers = [threading.Thread(target=produce, args=(offset,)) for offset in (0, 10_000)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join()
    consumer.join(timeout=60)
    done.set()

    assert errors == []
    assert sorted(received) == [
        *range(MESSAGES_PER_PRODUCER),
        *range(10_000, 10_000 + MESSAGES_PER_PRODUCER),
    ]


def test_a_lost_redis_with_a_task_unacknowledged_does_not_stop_the_worker(
    private_redis: RedisServer,
) -> None:
    # Given a consumer holding a message unacknowledged, as a worker mid-task does
    connection = Connection(private_redis.url, transport="config.broker:RedisTransport")
    consumer = connection.SimpleQueue("work")
    consumer.put({"task": 1})
    consumer.get(timeout=5)
    channel: Any = connection.default_channel  # kombu's stubs name no transport's attributes

    # When Redis goes away and kombu drops the connection before closing the channel,
    # as the worker's consumer does on a connection error
    private_redis.stop()
    channel.connection.client = None
    channel._pool = None

    # Then closing the channel raises nothing that would stop the worker (kombu's own
    # transport raises AttributeError here: Redis's set of unacknowledged messages keeps
    # the message, and the sweep re-queues its work)
    channel.close()


def test_a_task_ending_after_redis_went_away_is_acknowledged_without_stopping_the_worker(
    private_redis: RedisServer,
) -> None:
    # Given a consumer holding a message unacknowledged, as a worker mid-task does
    connection = Connection(private_redis.url, transport="config.broker:RedisTransport")
    queue = connection.SimpleQueue("work")
    queue.put({"task": 1})
    message = queue.get(timeout=5)
    channel: Any = connection.default_channel

    # When Redis goes away while the task runs, and kombu drops the connection the
    # message came on, as the worker's consumer does before it reconnects
    private_redis.stop()
    channel.connection = None
    channel._pool = None

    # Then the task's acknowledgement raises nothing that would stop the worker (kombu's
    # own transport raises AttributeError: 'NoneType' object has no attribute 'client'),
    # and the message is let go (kombu removes acknowledged tags from its held ones lazily)
    message.ack()
    assert message.acknowledged
    assert channel.qos._dirty == {message.delivery_tag}
