"""Nothing lost: workers killed mid-request, Redis restarted, tasks delivered twice, a
webhook receiver that fails, and many uploads at once. Real processes throughout:
PostgreSQL, Redis (the test's own where it must be stopped), gunicorn, Celery worker and
beat from the Procfile, an origin and a webhook receiver on 127.0.0.1."""

import concurrent.futures
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import psycopg
import pytest
import urllib3
from celery import Celery
from PIL import Image
from standardwebhooks.webhooks import Webhook

from tests.harness.origin import Origin, image_answer
from tests.harness.redis import RedisServer, private_service
from tests.harness.service import Service, procfile_commands, start_service
from tests.support import (
    api_request,
    encoded,
    get_json,
    multipart_upload,
    photo,
    wait_for_finish,
    wait_until,
)

pytestmark = pytest.mark.e2e

SWEEP_REQUEUED = re.compile(r"sweep: SweepReport\(.*images_requeued=[1-9]")

# The sweep looks every second and presumes work lost after three.
FAST_SWEEP = {"SWEEP_INTERVAL": "1", "WORK_LEASE_SECONDS": "3", "IMAGE_MAX_ATTEMPTS": "5"}


def catalogue(origin: Origin, products: int, per_product: int = 3) -> tuple[str, int]:
    """A CSV of distinct photos, with about one URL in ten repeated; and its distinct URLs."""
    run = uuid.uuid4().hex[:8]
    urls: list[str] = []
    for index in range(products * per_product):
        if index % 10 == 9:
            urls.append(urls[index - 5])
            continue
        body = encoded(photo(480, 360, index), "JPEG", quality=90)
        urls.append(origin.add(f"/{run}/{index}.jpg", body))
    cells = [
        ",".join(urls[start : start + per_product]) for start in range(0, len(urls), per_product)
    ]
    rows = [f'{number},Product {number},"{cell}"' for number, cell in enumerate(cells, start=1)]
    return "S. No.,Product Name,Input Image Urls\n" + "\n".join(rows) + "\n", len(set(urls))


def status_of(service: Service, request_id: str) -> dict[str, Any]:
    code, body = get_json(f"{service.base_url}/api/status/{request_id}/")
    assert code == 200
    result: dict[str, Any] = body
    return result


def wait_for_progress(service: Service, request_id: str, done: int) -> None:
    def reached() -> bool:
        progress = status_of(service, request_id)["progress"]
        return bool(progress["succeeded"] + progress["failed"] >= done)

    wait_until(reached, timeout=120, interval=0.05, what=f"{done} images to be done")


def all_images(service: Service, request_id: str) -> list[dict[str, Any]]:
    url: str | None = f"{service.base_url}/api/requests/{request_id}/products/?page_size=500"
    images = []
    while url:
        _, page = get_json(url)
        images += [image for product in page["results"] for image in product["images"]]
        url = page["next"]
    return images


def assert_complete_and_counted_once(
    service: Service, request_id: str, total: int, distinct: int
) -> None:
    status = wait_for_finish(service.base_url, request_id)
    assert status["status"] == "completed", status
    assert status["progress"] == {
        "total": total,
        "succeeded": total,
        "failed": 0,
        "pending": 0,
        "cancelled": 0,
    }
    images = all_images(service, request_id)
    assert len(images) == total
    assert {image["status"] for image in images} == {"succeeded"}
    # One output file per distinct URL, plus the CSV: no orphans, no duplicates.
    folder = Path(service.env["STORAGE_DIR"]) / "output_images" / request_id
    served = {image["output_url"].rsplit("/", 1)[1] for image in images}
    assert len(served) == distinct
    [csv_name] = {path.name for path in folder.iterdir()} - served
    assert re.fullmatch(r"output-[\w-]{22}\.csv", csv_name)


@contextlib.contextmanager
def request_under_way(
    tmp_path: Path, origin: Origin
) -> Iterator[tuple[Service, RedisServer, str, int]]:
    """The service on PostgreSQL and a Redis of its own (nothing on disk), 40 images into a
    request of 300; stopped afterwards."""
    csv_text, distinct = catalogue(origin, products=100)
    with private_service(tmp_path, origin, FAST_SWEEP) as (service, redis, _):
        request_id = multipart_upload(service.base_url, csv_text).json()["request_id"]
        wait_for_progress(service, request_id, 40)
        yield service, redis, request_id, distinct


def test_a_worker_killed_mid_request_loses_nothing(tmp_path: Path, origin: Origin) -> None:
    # Given a request under way
    with request_under_way(tmp_path, origin) as (service, _, request_id, distinct):
        # When the worker and its children are killed outright, and another started
        worker = service.processes["worker"]
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        assert status_of(service, request_id)["progress"]["pending"] > 0
        service.start("worker-2", procfile_commands()["worker"])

        # Then the request completes, every image once, every file once
        assert_complete_and_counted_once(service, request_id, total=300, distinct=distinct)
        # having gone through the sweep for the images the killed worker held
        assert SWEEP_REQUEUED.search(service.log("worker-2"))


def pool_processes(worker: subprocess.Popen[bytes]) -> list[int]:
    """The pids of a Celery worker's pool processes: its children."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            # pid (command) state ppid ...; the command may hold spaces and parentheses
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == worker.pid:
                children.append(int(stat.parent.name))
    return children


@contextlib.contextmanager
def service_on(
    stack: str, tmp_path: Path, origin: Origin, env: dict[str, str]
) -> Iterator[Service]:
    if stack == "embedded":
        service = start_service(tmp_path, env, origin)
        try:
            yield service
        finally:
            service.stop()
    else:
        with private_service(tmp_path, origin, env) as (service, _, _):
            yield service


def answered_once(release: threading.Event, body: bytes) -> Callable[[Any], None]:
    """An origin route's serve: the photo, once release is set."""

    def serve(handler: Any) -> None:
        release.wait(60)
        image_answer(handler, body)

    return serve


@pytest.mark.parametrize("stack", ["embedded", "production"])
def test_pool_processes_killed_mid_batch_have_their_images_done_again_at_once(
    tmp_path: Path, origin: Origin, stack: str
) -> None:
    # Given a request whose catalogue holds three photos that their server sends only once
    # told to, on a service whose leases are ten minutes long: only the tasks given back
    # by lost processes can bring their images back within the test
    csv_text, distinct = catalogue(origin, products=20)
    release = threading.Event()
    held = [
        origin.add(
            f"/{uuid.uuid4().hex}/held.jpg",
            serve=answered_once(release, encoded(photo(480, 360, 1000 + n), "JPEG", quality=90)),
        )
        for n in range(3)
    ]
    csv_text += "".join(f"{100 + n},Held {n},{url}\n" for n, url in enumerate(held))
    with service_on(stack, tmp_path, origin, {"WORK_LEASE_SECONDS": "600"}) as service:
        request_id = multipart_upload(service.base_url, csv_text).json()["request_id"]
        wait_until(
            lambda: all(origin.hits.get(urlsplit(url).path) for url in held),
            timeout=60,
            what="the held photos' downloads to start",
        )

        # When every pool process of the worker is killed (as the kernel kills one that
        # ran out of memory), the busy ones mid-download and any idle one waiting for a
        # task, and the photos' server then answers
        worker = service.processes["worker"]
        for pid in pool_processes(worker):
            os.kill(pid, signal.SIGKILL)
        release.set()

        # Then the worker goes on with new processes, and the request completes, every
        # image once, every file once, in a fraction of the lease
        assert_complete_and_counted_once(service, request_id, total=63, distinct=distinct + 3)
        log = service.log("worker")
        assert "WorkerLostError" in log
        assert not SWEEP_REQUEUED.search(log)
        # each loss a line in the log's own format, not Python's bare last resort
        exits = [line for line in log.splitlines() if "exited with 'signal 9" in line]
        assert exits
        assert not any(line.startswith("Process ") for line in exits), exits
        assert worker.poll() is None
        # the held photos downloaded again by the tasks given back
        assert all(origin.hits[urlsplit(url).path] >= 2 for url in held)


def test_redis_restarted_mid_request_loses_nothing(tmp_path: Path, origin: Origin) -> None:
    # Given a request under way
    with request_under_way(tmp_path, origin) as (service, redis, request_id, distinct):
        # When Redis stops (losing every queued message) and starts again
        redis.stop()
        assert status_of(service, request_id)["progress"]["pending"] > 0
        redis.start()

        # Then the request completes, every image once, the lost messages re-queued
        assert_complete_and_counted_once(service, request_id, total=300, distinct=distinct)
        assert SWEEP_REQUEUED.search(service.log("worker"))


def test_an_upload_while_redis_is_down_is_accepted_and_processed_later(
    tmp_path: Path, origin: Origin
) -> None:
    # Given the service on PostgreSQL with its Redis stopped
    csv_text, distinct = catalogue(origin, products=4)
    with private_service(tmp_path, origin, FAST_SWEEP) as (service, redis, _):
        redis.stop()

        # When a catalogue is uploaded, then it is accepted (stored, not yet queued)
        response = multipart_upload(service.base_url, csv_text)
        assert response.status == 202, response.data
        request_id = response.json()["request_id"]
        assert status_of(service, request_id)["status"] == "pending"
        # while /healthz tells the load balancer the broker is away
        health = urllib3.request("GET", f"{service.base_url}/healthz", timeout=30)
        assert health.status == 503
        assert health.json()["broker"].startswith("error: ")
        assert health.json()["database"] == "ok"
        # and /livez tells whatever restarts processes that this one needs no restart
        live = urllib3.request("GET", f"{service.base_url}/livez", timeout=30)
        assert (live.status, live.json()) == (200, {"status": "ok"})

        # And once Redis is back, the sweep starts it and it completes
        redis.start()
        assert_complete_and_counted_once(service, request_id, total=12, distinct=distinct)


def test_the_same_task_delivered_twice_changes_nothing(
    production_service: Service, origin: Origin
) -> None:
    # Given a finished request
    service = production_service
    csv_text, _ = catalogue(origin, products=3)
    request_id = multipart_upload(service.base_url, csv_text).json()["request_id"]
    before = wait_for_finish(service.base_url, request_id)
    images_before = all_images(service, request_id)
    folder = Path(service.env["STORAGE_DIR"]) / "output_images" / request_id
    files_before = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}

    # When its tasks are delivered again, each twice
    client = Celery(broker=service.env["CELERY_BROKER_URL"])
    image_id = int(images_before[0]["output_url"].rsplit("/", 1)[1].split(".")[0])
    sent = [
        client.send_task("processing.images_process", args=[[image_id]], queue="images").id,
        client.send_task("processing.images_process", args=[[image_id]], queue="images").id,
        client.send_task("processing.request_start", args=[request_id], queue="requests").id,
        client.send_task("processing.request_start", args=[request_id], queue="requests").id,
        client.send_task("processing.request_finalize", args=[request_id], queue="requests").id,
    ]
    wait_until(
        lambda: all(f"[{task_id}] succeeded" in service.log("worker") for task_id in sent),
        timeout=30,
        what="the repeated tasks to run",
    )

    # Then nothing changed: status, images, files
    assert status_of(service, request_id) == before
    assert all_images(service, request_id) == images_before
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == files_before


def test_a_failing_webhook_is_retried_with_one_event_id_and_verifiable_signatures(
    production_service: Service, origin: Origin
) -> None:
    # Given a receiver that answers 500 three times, then 200
    service = production_service
    hook = f"/{uuid.uuid4().hex}/hook"
    origin.post_statuses[hook] = [500, 500, 500, 200]
    csv_text, _ = catalogue(origin, products=1)

    # When a request finishes
    request_id = multipart_upload(
        service.base_url, csv_text, webhook_url=origin.base_url + hook
    ).json()["request_id"]
    assert wait_for_finish(service.base_url, request_id)["status"] == "completed"

    # Then four attempts were made and recorded, the last delivered
    delivery = wait_until(
        lambda: (
            (body := get_json(f"{service.base_url}/api/requests/{request_id}/webhook/")[1])["state"]
            == "delivered"
            and body
        ),
        timeout=60,
        what="the webhook to be delivered",
    )
    assert [attempt["status_code"] for attempt in delivery["attempt_log"]] == [500, 500, 500, 200]
    assert all(attempt["duration_ms"] >= 0 for attempt in delivery["attempt_log"])
    assert delivery["attempts"] == 4
    posts = origin.posts_to(hook)
    assert len(posts) == 4
    # With one event id, each signature verifying with the receivers' own library
    assert {headers["webhook-id"] for headers, _ in posts} == {delivery["event_id"]}
    receiver = Webhook(service.webhook_secret)
    payloads = [receiver.verify(body, headers) for headers, body in posts]
    assert all(payload == payloads[0] for payload in payloads)
    assert payloads[0]["request_id"] == request_id
    assert status_of(service, request_id)["status"] == "completed"

    # And it can be sent again on request, with the same event id
    again = api_request("POST", f"{service.base_url}/api/requests/{request_id}/webhook/")
    assert again.status == 202
    wait_until(lambda: len(origin.posts_to(hook)) == 5, timeout=30, what="the re-sent webhook")
    assert origin.posts_to(hook)[-1][0]["webhook-id"] == delivery["event_id"]


WEBHOOKS_WAITING = re.compile(r'^imgsvc_queue_messages\{queue="webhooks"\} (\d+)', re.MULTILINE)


def test_receivers_that_hold_their_answers_delay_no_request_nor_pile_up_sends(
    tmp_path: Path, origin: Origin
) -> None:
    """Webhook attempts ran on the requests' worker processes: eight receivers holding
    their answers for 30 s held every one, and a plain upload took 21.5 s instead of
    0.76 s, its start queued behind the sends; and each sweep queued another send of every
    delivery waiting behind them (the queue grew from 8 to 54 messages in 50 s)."""
    # Given a receiver that holds each POST for 8 s (within WEBHOOK_TIMEOUT, 10 s), and
    # the service as `make run` starts it (two webhook processes here), its sweep every second
    hook = f"/{uuid.uuid4().hex}/slow-hook"
    origin.post_delays[hook] = 8
    service = start_service(tmp_path, {}, origin)
    try:
        # and four requests that finished, their webhooks going there, two of them held
        hooked = [
            multipart_upload(
                service.base_url,
                catalogue(origin, products=1, per_product=1)[0],
                webhook_url=origin.base_url + hook,
            ).json()["request_id"]
            for _ in range(4)
        ]
        wait_until(lambda: len(origin.posts_to(hook)) >= 2, timeout=60, what="two held POSTs")
        held_since = time.monotonic()

        # When another request is uploaded
        uploaded = multipart_upload(service.base_url, catalogue(origin, products=1)[0])
        status = wait_for_finish(service.base_url, uploaded.json()["request_id"], timeout=60)

        # Then it finishes as fast as with no receiver held (about a second here; its start
        # and finalisation waited 8 to 16 s for the held POSTs)
        assert status["status"] == "completed"
        assert time.monotonic() - held_since < 5

        # And after several sweeps, the two sends waiting behind the held POSTs are on the
        # queue at most twice each (as their requests finished, and by one sweep), not once
        # more for every sweep
        time.sleep(max(0.0, held_since + 5 - time.monotonic()))
        assert len(origin.posts_to(hook)) == 2  # still held
        metrics = urllib3.request("GET", f"{service.base_url}/metrics", timeout=10).data.decode()
        [waiting] = WEBHOOKS_WAITING.findall(metrics)
        assert 2 <= int(waiting) <= 4

        # And every event is delivered, once
        for request_id in hooked:
            wait_until(
                lambda request_id=request_id: (  # type: ignore[misc]
                    status_of(service, request_id)["webhook"]["state"] == "delivered"
                ),
                timeout=60,
                what="the held webhooks to be delivered",
            )
        assert len(origin.posts_to(hook)) == 4
    finally:
        service.stop()


def test_twenty_uploads_at_once_all_complete_while_status_keeps_answering(
    production_service: Service, origin: Origin
) -> None:
    # Given twenty catalogues of five products with two images each
    service = production_service
    catalogues = [catalogue(origin, products=5, per_product=2)[0] for _ in range(20)]

    # When they are uploaded at once
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(lambda text: multipart_upload(service.base_url, text), catalogues)
        )
    assert [response.status for response in responses] == [202] * 20
    request_ids = [response.json()["request_id"] for response in responses]

    # Then the status endpoint answers throughout, and every request completes in full
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        finals = list(
            pool.map(lambda rid: wait_for_finish(service.base_url, rid, timeout=240), request_ids)
        )
    assert [final["status"] for final in finals] == ["completed"] * 20
    assert sum(final["progress"]["succeeded"] for final in finals) == 20 * 10
    assert all(final["progress"]["total"] == 10 for final in finals)


def test_work_goes_on_at_once_after_postgresql_dropped_every_connection(
    tmp_path: Path, origin: Origin
) -> None:
    """As a restart or a failover does. The workers kept their dead connections, and
    every task failed on them, the sweep's too, until the workers were restarted."""
    csv_text, _ = catalogue(origin, products=4)
    # Given the service with the production's lease and sweep, which recover nothing within
    # this test's deadline, having finished a request (its workers connected)
    with private_service(tmp_path, origin) as (service, _, database_url):
        first = multipart_upload(service.base_url, csv_text).json()["request_id"]
        assert wait_for_finish(service.base_url, first)["status"] == "completed"

        # When PostgreSQL ends every connection to the service's database
        with psycopg.connect(database_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM "
                "pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()) AS ended"
            ).fetchone()
        assert ended is not None
        assert ended[0] > 0

        # Then the next catalogue is processed at once, as if nothing had happened
        again, _ = catalogue(origin, products=4)
        second = multipart_upload(service.base_url, again).json()["request_id"]
        assert wait_for_finish(service.base_url, second, timeout=60)["status"] == "completed"


@contextlib.contextmanager
def database_away(database_url: str) -> Iterator[None]:
    """The database refusing every connection, and those it had ended, as while PostgreSQL
    restarts; back afterwards."""
    server, name = database_url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                [name],
            )
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_a_task_that_met_the_database_away_is_tried_again_within_seconds(
    tmp_path: Path, origin: Origin
) -> None:
    """A task that failed on its first query was acknowledged and lost: its catalogue waited
    for the sweep, WORK_LEASE_SECONDS (5 minutes) after PostgreSQL came back."""
    csv_text, _ = catalogue(origin, products=4)
    with private_service(tmp_path, origin) as (service, _, database_url):
        worker = service.processes["worker"].pid
        # Given the workers paused, and a catalogue accepted: its start waits in the queue
        os.killpg(worker, signal.SIGSTOP)
        try:
            request_id = multipart_upload(service.base_url, csv_text).json()["request_id"]

            # When the workers go on while the database refuses every connection
            with database_away(database_url):
                os.killpg(worker, signal.SIGCONT)
                wait_until(
                    lambda: "OperationalError" in service.log("worker"),
                    timeout=30,
                    what="a task to meet the database away",
                )
        finally:
            os.killpg(worker, signal.SIGCONT)

        # Then, the database back, the catalogue is processed within a minute, under the
        # production's lease of 5 minutes
        assert wait_for_finish(service.base_url, request_id, timeout=60)["status"] == "completed"


def test_a_redis_that_hangs_leaves_the_web_answering(tmp_path: Path, origin: Origin) -> None:
    """A Redis paused (or its host gone without a reset) held each web thread that asked it
    for good: a few health probes held them all, and /livez, which asks nothing of Redis,
    went unanswered."""
    with private_service(tmp_path, origin) as (service, redis, _):
        assert redis.process is not None
        # Given Redis paused: connections open, nothing answered
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            # When more health probes come than the web has threads
            with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
                probes = [
                    pool.submit(
                        urllib3.request,
                        "GET",
                        f"{service.base_url}/healthz",
                        timeout=30,
                        retries=False,
                    )
                    for _ in range(12)
                ]
                # Then the process still answers /livez, and each probe says Redis is away
                # within its check's seconds, not never
                live = urllib3.request("GET", f"{service.base_url}/livez", timeout=15)
                assert live.status == 200
                answers = [probe.result(timeout=60) for probe in probes]
            assert {answer.status for answer in answers} == {503}
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)


# What a worker may write to a file under `ulimit -f 4096`: 4,096 blocks of 512 bytes.
WORKER_FILE_LIMIT = 2 * 2**20


def noise_jpeg(seed: int) -> bytes:
    """A JPEG of random pixels whose output at quality 50 (2.4 MB: noise does not compress)
    is larger than WORKER_FILE_LIMIT."""
    pixels = np.random.default_rng(seed).integers(0, 256, (2400, 2400, 3), dtype=np.uint8)
    return encoded(Image.fromarray(pixels), "JPEG", quality=90)


@contextlib.contextmanager
def worker_without_room(service: Service) -> Iterator[None]:
    """The service's worker replaced by one that may write no file past WORKER_FILE_LIMIT;
    then by one without that limit.

    Faked: a full storage, by RLIMIT_FSIZE on the worker's processes alone: a disk cannot
    be filled without root, and the test's own disk must not be. Its writes past the limit
    fail part way through the file, with EFBIG ("File too large") where a full disk's fail
    with ENOSPC; what the worker's log and the database take stays far below it."""
    command = procfile_commands()["worker"]
    worker = service.processes.pop("worker")
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=30)
    service.start("worker-full", f"/bin/sh -c 'ulimit -f 4096; exec {command}'")
    service.wait_ready(web=None, workers=["worker-full"])
    yield
    full = service.processes.pop("worker-full")
    os.killpg(full.pid, signal.SIGTERM)
    full.wait(timeout=30)
    service.start("worker", command)
    service.wait_ready(web=None, workers=["worker"])


def test_an_output_the_storage_has_no_room_for_leaves_no_file_and_a_retry_makes_it(
    tmp_path: Path, origin: Origin
) -> None:
    """The write refused part way left a file of 2 MB under the output's name (zero bytes
    on a disk already full), which the web served as the image; and the image failed as
    storage_error, "The output could not be stored.", which did not say why."""
    run = uuid.uuid4().hex[:8]
    small = origin.add(f"/{run}/small.jpg", encoded(photo(480, 360, 1), "JPEG", quality=90))
    large = origin.add(f"/{run}/noise.jpg", noise_jpeg(1))
    csv_text = f'S. No.,Product Name,Input Image Urls\n1,Lamp,"{small},{large}"\n'
    with private_service(tmp_path, origin) as (service, _, _):
        folder = Path(service.env["STORAGE_DIR"]) / "output_images"
        # Given a worker whose storage has room for a photo but not for an output of noise
        with worker_without_room(service):
            # When a catalogue of both is processed
            request_id = multipart_upload(service.base_url, csv_text).json()["request_id"]
            status = wait_for_finish(service.base_url, request_id, timeout=60)

            # Then the photo succeeded and the noise failed, its attempts spent, saying the
            # storage was full: not the image's fault
            assert status["status"] == "completed_with_errors", status
            photo_image, noise_image = all_images(service, request_id)
            assert photo_image["status"] == "succeeded"
            assert (noise_image["status"], noise_image["error_code"]) == ("failed", "storage_full")
            assert noise_image["error"] == (
                "Storage full: the output could not be saved on our side (File too large). "
                "Tried 2 times."
            )
            # and nothing of the noise's output is left in the storage to be served
            served = photo_image["output_url"].rsplit("/", 1)[1]
            left = {path.name for path in (folder / request_id).iterdir()}
            assert {name for name in left if not name.startswith("output-")} == {served}

        # When the storage has room again, and the request is retried
        retried = api_request("POST", f"{service.base_url}/api/requests/{request_id}/retry/")
        assert retried.status == 202, retried.data

        # Then the noise's output is made, whole
        assert wait_for_finish(service.base_url, request_id, timeout=60)["status"] == "completed"
        _, noise_image = all_images(service, request_id)
        output = urllib3.request("GET", noise_image["output_url"], timeout=10)
        assert output.status == 200
        assert len(output.data) == noise_image["output_bytes"] > WORKER_FILE_LIMIT
