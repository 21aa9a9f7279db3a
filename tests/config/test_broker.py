"""The embedded broker under concurrent producers and a consumer: every message arrives
whole. kombu's own filesystem transport ("filesystem" here) fails this: its consumer moves
a file away while the producer is still writing it, reads it empty, and raises."""

import threading
from pathlib import Path

import pytest
from kombu import Connection, Queue

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
