"""kombu's transports, each with a fix that keeps the Celery worker alive.

The embedded default's filesystem transport, with each message written to a hidden file
first and renamed into the queue folder: kombu writes a message in place, and a consumer
may move the file away before the writer has filled it; the consumer reads an empty file,
fails to decode it, and the Celery worker stops with "Unrecoverable error". A rename is
atomic, so a consumer sees whole messages or none.

The Redis transport, for when Redis goes away while a task is unacknowledged: closing the
lost connection, kombu 5.7 tries to put the task back on the queue through a connection it
has already dropped (AttributeError: 'NoneType' object has no attribute 'hostname'), and
the worker stops with "Unrecoverable error" instead of reconnecting. The message is not
lost by skipping that: it stays in Redis's set of unacknowledged messages, restored after
the visibility timeout, and the sweep queues its work again from the database sooner. A
task that was running then, and ends after the worker reconnected, is acknowledged through
that same dropped connection, with the same error: that acknowledgement is skipped too.
"""

import logging
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, redis, virtual
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    # The stubs give virtual.Channel and filesystem.Channel different names for payload.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        # A leading dot keeps the half-written file out of every queue's listing.
        partial = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.partial")
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, os.path.join(self.data_folder_out, name))
        except OSError as error:
            raise ChannelError(f"Cannot add {name!r} to the queue folder") from error


class Transport(filesystem.Transport):
    """Polled, but declared asynchronous: the worker then runs Celery's event loop, whose
    pool gives each process a pipe of its own. With the blocking pool's one shared queue, a
    pool process killed while it waited for a task (out of memory, kill -9) left the
    queue's lock held, and every process after it waited on that lock for ever."""

    Channel = Channel
    implements = filesystem.Transport.implements.extend(asynchronous=True)

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        loop.call_repeatedly(self.polling_interval or 0.1, self._deliver_waiting, connection)

    def _deliver_waiting(self, connection: Any) -> None:
        """Every message the consumers can take now (the prefetch limit allowing)."""
        try:
            while True:
                self.drain_events(connection, timeout=0)
        except TimeoutError:  # none waiting
            pass


logger = logging.getLogger(__name__)


class RedisQoS(redis.QoS):
    def ack(self, delivery_tag: Any) -> None:
        try:
            super().ack(delivery_tag)
        except AttributeError:
            self._channel_gone(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue=requeue)
        except AttributeError:
            self._channel_gone(delivery_tag)

    def _channel_gone(self, delivery_tag: Any) -> None:
        # The task came on a channel that closed while it ran (Redis went away): kombu
        # reaches Redis through that channel's dropped connection. A Redis that kept the
        # message delivers it again after the visibility timeout, and the claims make
        # that second run harmless; forgetting it here keeps the worker alive.
        logger.warning("a task ended after Redis went away; its acknowledgement is dropped")
        virtual.QoS.ack(self, delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        try:
            super().restore_unacked(client)
        except AttributeError:
            delivered: dict[str, Any] = self._delivered or {}
            logger.warning(
                "Redis went away with %d task(s) unacknowledged; they stay in Redis and the "
                "sweep re-queues their work",
                len(delivered),
            )
            delivered.clear()


class RedisChannel(redis.Channel):
    QoS = RedisQoS


class RedisTransport(redis.Transport):
    Channel = RedisChannel
