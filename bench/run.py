"""`make bench`: the whole pipeline against plain Pillow on the same cores, in one run.

1. A set of distinct photographs (bench/images.py) served by an origin on 127.0.0.1
   (bench/origin.py: one asyncio loop, connections kept open, as a CDN would serve them).
2. The service in its production shape: PostgreSQL, Redis, gunicorn and Celery workers
   on every core (the Procfile's commands, started as the tests start them).
3. 500 products x 3 images (about a tenth of the URLs repeated) uploaded through the API,
   timed from the upload until the status says finished; peak memory of every worker.
4. The status endpoint under concurrent load.
5. The reference ceiling: the same images, in memory, decoded and re-encoded at quality
   50 by plain Pillow (open, load, save) on as many processes, once before step 2 and
   once after the service has stopped; the ratio is against their mean, and a run in
   which they differ by more than CEILING_DRIFT is flagged (the machine's speed moved
   under it: on a shared machine plain Pillow read 104 to 171 images/s within two
   hours). Our compress() the same way, after.
6. Upload latency for CSVs of 10,000 and 100,000 rows (row limit raised), web only.

`--preset rerun` adds, after step 3, the same CSV uploaded twice more: once to an origin
that sends ETags and answers 304 (nothing downloaded, nothing encoded), once to an origin
that sends no validators (every body downloaded, its hash matched, nothing encoded).
`--perceptual` adds, after step 3, the same CSV uploaded again in the perceptual mode at
the medium target (every body downloaded again: no output of those settings exists yet),
and prints its images/s against the fixed-quality run's.

Needs PostgreSQL and Redis: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)
names the server a scratch database is made on; BENCH_REDIS_URL (default
redis://127.0.0.1:6379/9) is a Redis database the benchmark may empty.
"""

import argparse
import io
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import urllib3
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/9")
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")

from bench.images import TYPICAL, image_set  # noqa: E402
from bench.origin import origin_serve_fast  # noqa: E402
from imaging.encode import OutputFormat, compress, decode_cost  # noqa: E402
from imaging.guard import bytes_per_pixel  # noqa: E402
from imaging.inspect import open_image  # noqa: E402
from tests.harness.service import Service, postgres_database, start_service  # noqa: E402
from tests.support import blank_png, encoded, photo  # noqa: E402

CORES = os.cpu_count() or 1
# Plain Pillow's two readings (before and after the service's run) further apart than this,
# as a share of their mean, mark the run as noisy: its ratio says more about the machine.
CEILING_DRIFT = 0.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--per-product", type=int, default=3)
    parser.add_argument("--status-seconds", type=float, default=10.0)
    parser.add_argument("--skip-upload-latency", action="store_true")
    parser.add_argument(
        "--no-fairness",
        dest="fairness",
        action="store_false",
        help="skip the second run with a small request of another account in its midst",
    )
    parser.add_argument(
        "--preset",
        choices=["mix", "rerun", "typical"],
        default="mix",
        help="rerun: the catalogue uploaded again, unchanged, with and without ETags; "
        "typical: 800x800 and 1600x1200 JPEGs, 600 then 1,500 images, every URL distinct",
    )
    parser.add_argument(
        "--perceptual",
        action="store_true",
        help="the same CSV again at quality_mode=perceptual, target=medium, timed",
    )
    parser.add_argument(
        "--worker-concurrency", type=int, help="worker processes (default: the service's own)"
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a setting to try"
    )
    options = parser.parse_args()
    print(f"machine: {CORES} cores", flush=True)
    if options.preset == "typical":
        for products in (200, 500):
            total = products * options.per_product
            images = image_set(total, TYPICAL)
            # Upload latency and memory once, after the larger run.
            results = one_run(images, total, options, extras=products == 500)
            report(results, f"typical, {total} images")
    else:
        total = options.products * options.per_product
        # About a tenth of the URLs repeated, as in a catalogue whose products share photos.
        images = image_set(total - total // 10)
        report(one_run(images, total, options, extras=True), f"{options.preset}, {total} images")


def one_run(
    images: list[Path], total: int, options: argparse.Namespace, *, extras: bool
) -> dict[str, Any]:
    """The service on a catalogue of `total` URLs over `images` (repeated in turn where
    there are fewer), then plain Pillow and our compress() on the same images; with
    extras, upload latency and the memory of large conversions too."""
    bodies = [path.read_bytes() for path in images]
    distinct = len(bodies)
    print(f"{total} images, {distinct} distinct, {sum(map(len, bodies)) / 1e6:.0f} MB", flush=True)
    results: dict[str, Any] = {}
    catalogue_bodies = bodies + [
        bodies[(index * 7) % len(bodies)] for index in range(total - distinct)
    ]
    ceiling_before = throughput(reference_encode, catalogue_bodies)
    origin, origin_stop = origin_serve_fast()
    try:
        urls = [
            origin.add(f"/{path.name}", body, etag=f'"{index}"')
            for index, (path, body) in enumerate(zip(images, bodies, strict=True))
        ]
        catalogue_urls = urls + [urls[(index * 7) % len(urls)] for index in range(total - distinct)]
        results |= end_to_end(origin, catalogue_urls, options)
        if extras and not options.skip_upload_latency:
            results |= upload_latency(origin)
    finally:
        origin_stop()

    # The yardstick runs again, with the service stopped, on the same number of processes.
    results["ceilings"] = (ceiling_before, throughput(reference_encode, catalogue_bodies))
    results["ceiling"] = statistics.mean(results["ceilings"])
    results["ours"] = throughput(project_encode, catalogue_bodies)
    results["memory"] = memory_peaks() if extras else {}
    return results


def end_to_end(origin: Any, urls: list[str], options: argparse.Namespace) -> dict[str, Any]:
    _redis_flush()
    rows = [
        f'{number},Product {number},"{",".join(urls[start : start + options.per_product])}"'
        for number, start in enumerate(range(0, len(urls), options.per_product), start=1)
    ]
    csv_text = "S. No.,Product Name,Input Image Urls\n" + "\n".join(rows) + "\n"
    with tempfile.TemporaryDirectory() as workdir, postgres_database() as database_url:
        service = start_service(
            Path(workdir),
            {
                "DATABASE_URL": database_url,
                "CELERY_BROKER_URL": BENCH_REDIS_URL,
                "WEB_CONCURRENCY": str(CORES * 2 + 1),
                # The production defaults, where the tests' service fixture tightens them.
                "SWEEP_INTERVAL": "30",
                "WORK_LEASE_SECONDS": "300",
                "IMAGE_MAX_ATTEMPTS": "3",
                # Empty: the service's own default, not the tests' 2.
                "CELERY_WORKER_CONCURRENCY": str(options.worker_concurrency or ""),
                **dict(item.split("=", 1) for item in options.env),
                "IMAGE_FETCH_TOTAL_TIMEOUT": "60",
                "IMAGE_FETCH_READ_TIMEOUT": "15",
                "LOG_LEVEL": "WARNING",
            },
            origin,
        )
        try:
            _settle()
            cpu_before = cpu_seconds()
            started = time.monotonic()
            status_url = _upload(service, service.api_key, csv_text)
            status = _wait_finished(status_url, service.api_key)
            elapsed = time.monotonic() - started
            cpu_used = {
                kind: seconds - cpu_before.get(kind, 0.0) for kind, seconds in cpu_seconds().items()
            }
            progress = status["progress"]
            print(f"end to end: {progress} in {elapsed:.1f} s", flush=True)
            memory = worker_peak_memory(service)
            status_rps = status_load(status_url, service.api_key, options.status_seconds)
            small = small_requests(service, origin, urls)
            fairness = fair_share(service, origin, urls, csv_text) if options.fairness else {}
            again = unchanged_again(service, origin, csv_text) if options.preset == "rerun" else {}
            perceptual = perceptual_run(service, csv_text) if options.perceptual else {}
        finally:
            service.stop()
    return {
        "e2e_seconds": elapsed,
        "e2e_images": progress["total"],
        "e2e_failed": progress["failed"],
        "worker_peak_mb": memory,
        "cpu_seconds": cpu_used,
        "status_rps": status_rps,
        **small,
        **fairness,
        **again,
        **perceptual,
    }


def unchanged_again(service: Service, origin: Any, csv_text: str) -> dict[str, Any]:
    """The same catalogue uploaded again, its sources unchanged: first with the origin's
    ETags (304s), then with the origin sending no validators (bodies, matched by hash)."""
    # What autovacuum does within a minute of the first run in any deployment: without
    # statistics, PostgreSQL plans each batch's UPDATE as a scan of the request's images.
    with psycopg.connect(service.env["DATABASE_URL"], autocommit=True) as connection:
        connection.execute("ANALYZE")
    timings = {}
    for name in ("rerun_304_seconds", "rerun_hash_seconds"):
        if name == "rerun_hash_seconds":
            for route in origin.routes.values():
                route.etag = ""
        sent_before = sum(origin.bodies_sent.values())
        _settle()
        cpu_before = cpu_seconds()
        started = time.monotonic()
        status = _wait_finished(_upload(service, service.api_key, csv_text), service.api_key)
        timings[name] = time.monotonic() - started
        bodies = sum(origin.bodies_sent.values()) - sent_before
        print(f"again, unchanged: {status['progress']} in {timings[name]:.1f} s, {bodies} bodies")
        print(f"  CPU: {_cpu_shares(cpu_before, cpu_seconds())}", flush=True)
        print(f"  {_timeline(service, status['request_id'])}", flush=True)
        timings[name.replace("seconds", "bodies")] = bodies
    return timings


def perceptual_run(service: Service, csv_text: str) -> dict[str, Any]:
    """The same catalogue in the perceptual mode at the medium target: every body
    downloaded and searched, as a first run of those settings is."""
    _settle()
    cpu_before = cpu_seconds()
    started = time.monotonic()
    fields = {"quality_mode": "perceptual", "target": "medium"}
    status = _wait_finished(_upload(service, service.api_key, csv_text, fields), service.api_key)
    seconds = time.monotonic() - started
    score = status["score"]
    print(
        f"perceptual medium: {status['progress']} in {seconds:.1f} s, "
        f"score p5 {score['p5']} median {score['median']}, bytes {status['bytes']}"
    )
    print(f"  CPU: {_cpu_shares(cpu_before, cpu_seconds())}", flush=True)
    tries = _tries(service, status["request_id"])
    return {"perceptual_seconds": seconds, "perceptual_images": status["progress"]["total"]} | tries


def _tries(service: Service, request_id: str) -> dict[str, float]:
    """The encodes a request's images took, on average and at most."""
    average, most = _one_row(
        service,
        "SELECT avg(tries), max(tries) FROM product_images WHERE request_id = %s",
        [request_id],
    )
    return {"perceptual_tries": float(average), "perceptual_max_tries": float(most)}


def _one_row(service: Service, sql: str, params: list[Any]) -> tuple[Any, ...]:
    """The one row a query of the service's database gives."""
    with psycopg.connect(service.env["DATABASE_URL"], autocommit=True) as connection:
        row = connection.execute(sql, params).fetchone()
    assert row is not None
    return row


def _timeline(service: Service, request_id: str) -> str:
    """When a request's phases ended, from its upload, as its rows recorded them."""
    *phases, created = _one_row(
        service,
        "SELECT min(i.queued_at), min(i.claimed_at), max(i.finished_at), r.finished_at,"
        " r.created_at FROM requests r"
        " JOIN product_images i ON i.request_id = r.request_id WHERE r.request_id = %s"
        " GROUP BY r.request_id",
        [request_id],
    )
    names = ("first queued", "first claimed", "last image", "finished")
    return ", ".join(
        f"{name} {(at - created).total_seconds():.2f} s"
        for name, at in zip(names, phases, strict=True)
    )


def small_requests(service: Service, origin: Any, urls: list[str]) -> dict[str, float]:
    """Ten 10-image requests one after the other, URLs new to the service: the time from
    each upload until its status says completed."""
    seconds = []
    for attempt in range(10):
        rows = []
        for number, url in enumerate(dict.fromkeys(urls[attempt * 10 : attempt * 10 + 10]), 1):
            path = url.removeprefix(origin.base_url)
            origin.routes[f"{path}?solo"] = origin.routes[path]
            rows.append(f"{number},Solo {number},{url}?solo\n")
        started = time.monotonic()
        status = _wait_finished(
            _upload(
                service, service.api_key, "S. No.,Product Name,Input Image Urls\n" + "".join(rows)
            ),
            service.api_key,
            interval=0.01,
        )
        seconds.append(time.monotonic() - started)
        assert status["status"] == "completed", status
    print(f"10-image requests: {', '.join(f'{s:.2f}' for s in seconds)} s", flush=True)
    return {"small_p50": statistics.median(seconds), "small_max": max(seconds)}


def fair_share(service: Service, origin: Any, urls: list[str], csv_text: str) -> dict[str, Any]:
    """The catalogue again (its URLs new to the service), and, once a tenth of it is done, a
    10-image request of another account: how long the small one took from its upload, and
    how much longer the catalogue took than alone."""
    again = csv_text.replace(".jpg", ".jpg?again")
    for url in dict.fromkeys(urls):
        path = url.removeprefix(origin.base_url)
        origin.routes[path + "?again"] = origin.routes[path]
    small_urls = [f"{url}?small" for url in dict.fromkeys(urls[:10])]
    for url in small_urls:
        path = url.removeprefix(origin.base_url)
        origin.routes[path] = origin.routes[path.removesuffix("?small")]
    small = "S. No.,Product Name,Input Image Urls\n" + "".join(
        f"{n},Small {n},{url}\n" for n, url in enumerate(small_urls, start=1)
    )
    other_key = service.manage("apikey", "create", "--account", "small-shop").splitlines()[-1]
    started = time.monotonic()
    large_status = _upload(service, service.api_key, again)
    http = urllib3.PoolManager()
    headers = {"Authorization": f"Bearer {service.api_key}"}
    while True:
        progress = http.request("GET", large_status, headers=headers).json()["progress"]
        if progress["succeeded"] + progress["failed"] >= progress["total"] // 10:
            break
        time.sleep(0.05)
    small_started = time.monotonic()
    _wait_finished(_upload(service, other_key, small), other_key, interval=0.02)
    small_seconds = time.monotonic() - small_started
    _wait_finished(large_status, service.api_key)
    large_seconds = time.monotonic() - started
    print(f"fair share: small request {small_seconds:.2f} s, catalogue {large_seconds:.1f} s")
    return {"small_seconds": small_seconds, "e2e_seconds_with_small": large_seconds}


def _upload(service: Service, key: str, csv_text: str, fields: dict[str, str] | None = None) -> str:
    response = urllib3.request(
        "POST",
        f"{service.base_url}/api/upload/",
        fields={"file": ("catalogue.csv", csv_text.encode(), "text/csv"), **(fields or {})},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert response.status == 202, response.data
    status_url: str = response.json()["status_url"]
    return status_url


def _wait_finished(status_url: str, key: str, interval: float = 0.1) -> dict[str, Any]:
    http = urllib3.PoolManager()
    headers = {"Authorization": f"Bearer {key}"}
    while True:
        status: dict[str, Any] = http.request("GET", status_url, headers=headers).json()
        if status["status"] not in {"pending", "processing"}:
            return status
        time.sleep(interval)


# What each kind of process is, by its command line.
PROCESS_KINDS = (
    ("celery", "Celery workers"),
    ("gunicorn", "gunicorn"),
    ("postgres", "PostgreSQL"),
    ("redis-server", "Redis"),
    ("bench", "this benchmark (origin, client)"),
)


def _settle(deadline: float = 20.0) -> None:
    """Wait until the service's processes have finished starting (gunicorn's workers load
    the views as they boot): under a tenth of a core between two looks half a second apart."""
    stop_at = time.monotonic() + deadline
    busy = ("Celery workers", "gunicorn", "PostgreSQL")
    while time.monotonic() < stop_at:
        before = cpu_seconds()
        time.sleep(0.5)
        after = cpu_seconds()
        if sum(after.get(kind, 0.0) - before.get(kind, 0.0) for kind in busy) < 0.05:
            return
    print("the service did not settle; measuring anyway", flush=True)


def _cpu_shares(before: dict[str, float], after: dict[str, float]) -> str:
    """Each kind's share of the machine's CPU between two readings of cpu_seconds()."""
    used = {kind: seconds - before.get(kind, 0.0) for kind, seconds in after.items()}
    machine = sum(used.values())
    return ", ".join(
        f"{name} {seconds / machine:.0%}"
        for name, seconds in sorted(used.items(), key=lambda item: -item[1])
        if seconds > 0.005 * machine
    )


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by each kind of process, and by none (idle), machine-wide."""
    used: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        kind = next((name for key, name in PROCESS_KINDS if key in command), "other")
        used[kind] = used.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    idle, iowait = Path("/proc/stat").read_text().split()[4:6]
    used["idle"] = (int(idle) + int(iowait)) / tick
    return used


def worker_peak_memory(service: Service) -> list[float]:
    """VmHWM (peak resident set) of the Celery worker and each of its child processes, MB."""
    main_pid = service.processes["worker"].pid
    pids = [main_pid, *_children(main_pid)]
    peaks = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in map(int, children):
            found += [child, *_children(child)]
    return found


def status_load(status_url: str, key: str, seconds: float) -> float:
    """Requests per second the status endpoint answers, from 2 x cores keep-alive clients."""
    clients = CORES * 2
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        counts = pool.starmap(_status_client, [(status_url, key, seconds)] * clients)
    return sum(counts) / seconds


def _status_client(status_url: str, key: str, seconds: float) -> int:
    http = urllib3.PoolManager(maxsize=4, headers={"Authorization": f"Bearer {key}"})
    done = 0
    stop_at = time.monotonic() + seconds
    threads: list[threading.Thread] = []
    lock = threading.Lock()

    def loop() -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            response = http.request("GET", status_url, timeout=10)
            assert response.status == 200
            with lock:
                done += 1

    for _ in range(4):
        thread = threading.Thread(target=loop)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return done


def upload_latency(origin: Any) -> dict[str, Any]:
    """p50/p99 of the upload call for 10,000- and 100,000-row CSVs, and web memory."""
    _redis_flush()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as workdir, postgres_database() as database_url:
        service = start_service(
            Path(workdir),
            {
                "DATABASE_URL": database_url,
                "CELERY_BROKER_URL": BENCH_REDIS_URL,
                "WEB_CONCURRENCY": "1",
                "CSV_MAX_ROWS": "100000",
                "CSV_MAX_BYTES": str(64 * 1024 * 1024),
                "ACCOUNT_UPLOAD_RATE_LIMIT": "",
                "ACCOUNT_MAX_PENDING_IMAGES": "0",
                "WEB_TIMEOUT": "300",
                "LOG_LEVEL": "WARNING",
            },
            origin,
        )
        # Only the web server is measured: no worker takes the queued requests.
        for name in ("worker", "beat"):
            process = service.processes.pop(name)
            process.terminate()
            process.wait()
        try:
            for rows, repeats in ((10_000, 20), (100_000, 3)):
                csv_data = (
                    "S. No.,Product Name,Input Image Urls\n"
                    + "".join(
                        f"{n},Product {n},https://cdn.shop.example/p/{n}.jpg\n"
                        for n in range(1, rows + 1)
                    )
                ).encode()
                latencies = []
                for _ in range(repeats):
                    started = time.monotonic()
                    response = urllib3.request(
                        "POST",
                        f"{service.base_url}/api/upload/",
                        fields={"file": ("catalogue.csv", csv_data, "text/csv")},
                        headers={"Authorization": f"Bearer {service.api_key}"},
                        timeout=300,
                    )
                    latencies.append(time.monotonic() - started)
                    assert response.status == 202, response.data[:500]
                results[f"upload_{rows}"] = (
                    statistics.median(latencies),
                    _percentile(latencies, 99),
                )
                results[f"web_peak_mb_{rows}"] = _web_peak(service)
                print(f"upload {rows} rows: {results[f'upload_{rows}']}", flush=True)
        finally:
            service.stop()
            _redis_flush()
    return results


def _web_peak(service: Service) -> float:
    pids = _children(service.processes["web"].pid)
    peaks = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


def _percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))
    return ordered[index]


def _redis_flush() -> None:
    import redis

    redis.Redis.from_url(BENCH_REDIS_URL).flushdb()


# What one large image costs a worker in memory (issue 13): peak resident set of a fresh
# process while compress() converts it, against the size of its decoded pixels and the
# budget's estimate (imaging.encode.decode_cost), which must not be below it. Noise is the
# worst an encoder meets: nothing in it compresses.
MEMORY_CASES: tuple[tuple[str, Callable[[], bytes], OutputFormat], ...] = (
    (
        "7000x7000 RGBA PNG to WebP",
        lambda: blank_png(7000, 7000, color_type=6),
        OutputFormat.SAME,
    ),
    ("7000x7000 16-bit grey PNG", lambda: blank_png(7000, 7000, 0, 16), OutputFormat.SAME),
    (
        "3000x2000 JPEG photo",
        lambda: encoded(photo(3000, 2000), "JPEG", quality=90),
        OutputFormat.SAME,
    ),
    (
        "3000x2000 RGBA noise WebP to WebP",
        lambda: noise(3000, 2000, "RGBA", "WEBP"),
        OutputFormat.SAME,
    ),
    (
        "3000x2000 RGBA noise AVIF to WebP",
        lambda: noise(3000, 2000, "RGBA", "AVIF"),
        OutputFormat.WEBP,
    ),
    (
        "3000x2000 RGBA noise PNG to AVIF",
        lambda: noise(3000, 2000, "RGBA", "PNG"),
        OutputFormat.AVIF,
    ),
    ("3000x2000 noise PNG to JPEG", lambda: noise(3000, 2000, "RGB", "PNG"), OutputFormat.SAME),
)


def noise(width: int, height: int, mode: str, format: str) -> bytes:
    pixels = Image.frombytes(
        mode, (width, height), random.Random(0).randbytes(width * height * len(mode))
    )
    return encoded(pixels, format, quality=80)


def memory_peaks() -> dict[str, tuple[float, float, float]]:
    """For each case: MB the conversion added to the process's peak, the decoded MB and the
    MB the budget counted for it."""
    peaks = {}
    for name, make, output_format in MEMORY_CASES:
        data = make()
        image = open_image(data, max_pixels=100_000_000)
        decoded = image.width * image.height * bytes_per_pixel(image.mode)
        estimate = decode_cost(image, output_format)
        # A new interpreter: a forked one reuses what its parent freed, and grows less.
        with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            grown = pool.apply(_conversion_peak, (data, output_format))
        peaks[name] = (grown / 1e6, decoded / 1e6, estimate / 1e6)
        print(
            f"memory: {name}: +{grown / 1e6:.0f} MB for {decoded / 1e6:.0f} MB decoded, "
            f"{estimate / 1e6:.0f} MB counted",
            flush=True,
        )
    return peaks


def _conversion_peak(data: bytes, output_format: OutputFormat) -> int:
    before = _vm("VmRSS")
    # No budget: what the conversion costs, which the default budget refuses to pay for
    # the largest of them.
    compress(
        data,
        quality=50,
        max_pixels=100_000_000,
        max_decode_bytes=2**40,
        output_format=output_format,
    )
    return _vm("VmHWM") - before


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def reference_encode(data: bytes) -> int:
    """The yardstick: plain Pillow, decode then re-encode as JPEG at quality 50."""
    image: Image.Image = Image.open(io.BytesIO(data))
    image.load()
    if image.mode not in {"RGB", "L", "CMYK"}:
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=50)
    return out.tell()


def project_encode(data: bytes) -> int:
    return len(compress(data, quality=50, max_pixels=50_000_000).data)


def throughput(encode: Callable[[bytes], int], bodies: list[bytes]) -> float:
    """Images per second with `encode` on CORES processes over bodies already in memory."""
    with multiprocessing.get_context("fork").Pool(CORES) as pool:
        pool.map(encode, bodies[: CORES * 2])  # warm up
        started = time.monotonic()
        pool.map(encode, bodies, chunksize=4)
        return len(bodies) / (time.monotonic() - started)


def report(results: dict[str, Any], title: str) -> None:
    e2e = results["e2e_images"] / results["e2e_seconds"]
    cpu = results["cpu_seconds"]
    machine = sum(cpu.values())
    before, after = results["ceilings"]
    drift = abs(after - before) / results["ceiling"]
    lines = [
        f"== {title} ==",
        f"end to end:        {e2e:7.1f} images/s ({results['e2e_images']} images in "
        f"{results['e2e_seconds']:.1f} s, {results['e2e_failed']} failed)",
        f"reference ceiling: {results['ceiling']:7.1f} images/s (plain Pillow, {CORES} processes; "
        f"{before:.1f} before the run, {after:.1f} after)",
        f"ratio:             {e2e / results['ceiling']:7.2f}",
        *(
            [f"noisy run:         plain Pillow moved {drift:.0%} between its two readings"]
            if drift > CEILING_DRIFT
            else []
        ),
        f"our compress():    {results['ours']:7.1f} images/s (same harness)",
        f"machine idle:      {cpu.get('idle', 0.0) / machine:7.0%} of the CPU while it ran",
        f"10-image request:  {results['small_p50']:7.2f} s p50, {results['small_max']:.2f} s "
        "max, upload to completed, the service otherwise idle",
        f"status endpoint:   {results['status_rps']:7.0f} requests/s",
        "worker peak RSS:   " + ", ".join(f"{mb:.0f} MB" for mb in results["worker_peak_mb"]),
    ]
    for name, (grown, decoded, counted) in results.get("memory", {}).items():
        lines.append(
            f"memory, {name}: +{grown:.0f} MB at peak, {grown / decoded:.2f} x its "
            f"{decoded:.0f} MB of decoded pixels; the budget counted {counted:.0f} MB"
            + (" (LESS THAN IT TOOK)" if counted < grown else "")
        )
    if "small_seconds" in results:
        alone, shared = results["e2e_seconds"], results["e2e_seconds_with_small"]
        small = results["small_seconds"]
        lines.append(
            f"fair share:        a 10-image request of another account done {small:.2f} s "
            f"after its upload; the catalogue took {shared:.1f} s with it, {alone:.1f} s alone "
            f"({shared / alone - 1:+.1%}; the small request is {10 / results['e2e_images']:.1%} "
            "of the work)"
        )
    for label, key in (("ETags, 304", "rerun_304"), ("no validators", "rerun_hash")):
        if f"{key}_seconds" in results:
            seconds = results[f"{key}_seconds"]
            lines.append(
                f"same CSV again ({label}): {seconds:.1f} s, "
                f"{results['e2e_seconds'] / seconds:.1f} x faster than the first run, "
                f"{results[f'{key}_bodies']} image bodies downloaded"
            )
    if "perceptual_seconds" in results:
        rate = results["perceptual_images"] / results["perceptual_seconds"]
        lines.append(
            f"perceptual medium: {rate:7.1f} images/s, {rate / e2e:.2f} of the fixed run's, "
            f"{results['perceptual_tries']:.1f} encodes an image (max "
            f"{results['perceptual_max_tries']:.0f})"
        )
    lines.append("CPU while it ran:  " + _cpu_shares({}, cpu))
    for rows in (10_000, 100_000):
        if f"upload_{rows}" in results:
            p50, p99 = results[f"upload_{rows}"]
            lines.append(
                f"upload {rows:>7,} rows: p50 {p50:.2f} s, p99 {p99:.2f} s, "
                f"web peak RSS {results[f'web_peak_mb_{rows}']:.0f} MB"
            )
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
