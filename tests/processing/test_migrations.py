"""Migrations on a database that already has requests: accounts arriving (the requests
all belong to the account `default`, which signs with the WEBHOOK_SECRET receivers
already verify with), and the bytes and re-used counters filled from the images' rows."""

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import Account
from processing.models import ProcessingRequest, Product

BEFORE = ("processing", "0002_recent_requests_and_labels")
BEFORE_ACCOUNTS = [BEFORE, ("accounts", None)]
OLD_SECRET = "whsec_dGVzdHMtb25seS13ZWJob29rLXNlY3JldC1rZXk="


@pytest.mark.django_db(transaction=True)
def test_requests_made_before_accounts_belong_to_default_signing_with_the_old_secret(
    settings: Any,
) -> None:
    # Given a database as it was before accounts, with a request in it
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_ACCOUNTS)
    old_models = executor.loader.project_state(BEFORE).apps
    old = old_models.get_model("processing", "ProcessingRequest").objects.create(
        public_base_url="http://testserver", quality=50, total_images=1
    )

    # When the migrations run, with the deployment's WEBHOOK_SECRET set
    settings.WEBHOOK_SECRET = OLD_SECRET
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    # Then the request belongs to `default`, whose webhook secret is that one
    request = ProcessingRequest.objects.select_related("account").get(pk=old.pk)
    assert request.account.name == "default"
    assert request.account.webhook_secret == OLD_SECRET


@pytest.mark.django_db(transaction=True)
def test_requests_made_before_the_bytes_counters_get_them_from_their_images(
    account: Account,
) -> None:
    # Given a database as it was before the counters, with a request of three images, two
    # of them succeeded
    before = [("processing", "0008_request_batch_size")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old_models = executor.loader.project_state(before).apps
    old_request = old_models.get_model("processing", "ProcessingRequest").objects.create(
        account_id=account.pk, public_base_url="http://testserver", quality=50, total_images=3
    )
    product = old_models.get_model("processing", "Product").objects.create(
        request_id=old_request.pk, position=0, serial_number=1, product_name="Lamp"
    )
    for position, (status, sizes) in enumerate(
        [("succeeded", (1000, 300)), ("succeeded", (500, 200)), ("failed", (None, None))]
    ):
        old_models.get_model("processing", "ProductImage").objects.create(
            request_id=old_request.pk,
            product_id=product.pk,
            position=position,
            input_url=f"https://shop.example/{position}.jpg",
            status=status,
            input_bytes=sizes[0],
            output_bytes=sizes[1],
        )

    # When the migrations run
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    # Then its counters say what its succeeded images' rows say
    request = ProcessingRequest.objects.get(pk=old_request.pk)
    assert (request.input_bytes, request.output_bytes) == (1500, 500)


@pytest.mark.django_db(transaction=True)
def test_requests_of_the_code_before_file_names_are_stored_during_a_deploy_and_named_by_none(
    account: Account,
) -> None:
    # Given a request made before file names were kept
    before = [("processing", "0016_request_csv_dialect")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old_models = executor.loader.project_state(before).apps
    old_request = old_models.get_model("processing", "ProcessingRequest")
    earlier = old_request.objects.create(
        account_id=account.pk, public_base_url="http://testserver", quality=50
    )

    # When the migrations run, and a process of the code before them goes on uploading
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    during = old_request.objects.create(
        account_id=account.pk, public_base_url="http://testserver", quality=50
    )

    # Then both are stored, with no file name
    names = ProcessingRequest.objects.filter(pk__in=[earlier.pk, during.pk]).values_list(
        "file_name", flat=True
    )
    assert list(names) == ["", ""]


@pytest.mark.django_db(transaction=True)
def test_products_of_the_code_before_serial_texts_are_shown_by_their_number(
    account: Account,
) -> None:
    # Given a product stored before the S. No.'s text was kept
    before = [("processing", "0019_webhook_queued_at")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old_models = executor.loader.project_state(before).apps
    old_request = old_models.get_model("processing", "ProcessingRequest").objects.create(
        account_id=account.pk, public_base_url="http://testserver", quality=50
    )
    old_product = old_models.get_model("processing", "Product")
    earlier = old_product.objects.create(
        request_id=old_request.pk, position=0, serial_number=7, product_name="Lamp"
    )

    # When the migrations run, and a process of the code before them goes on storing
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    during = old_product.objects.create(
        request_id=old_request.pk, position=1, serial_number=8, product_name="Shade"
    )

    # Then both are stored, shown (in the output CSV too) by their number
    products = Product.objects.filter(pk__in=[earlier.pk, during.pk]).order_by("position")
    assert [product.serial_as_written for product in products] == ["7", "8"]


@pytest.mark.django_db(transaction=True)
def test_requests_made_before_the_re_used_count_get_it_from_their_images(
    account: Account,
) -> None:
    # Given a database as it was before the count, with a request of four images, two of
    # them succeeded with an earlier request's output, and another request re-using none
    before = [("processing", "0021_request_csv_separator_line")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old_models = executor.loader.project_state(before).apps
    old_request = old_models.get_model("processing", "ProcessingRequest")
    again, new = (
        old_request.objects.create(
            account_id=account.pk, public_base_url="http://testserver", quality=50, total_images=4
        )
        for _ in range(2)
    )
    for request, reused in ((again, (True, True, False, False)), (new, (False,) * 4)):
        product = old_models.get_model("processing", "Product").objects.create(
            request_id=request.pk, position=0, serial_number=1, product_name="Lamp"
        )
        for position, (status, was_reused) in enumerate(
            zip(["succeeded", "succeeded", "succeeded", "failed"], reused, strict=True)
        ):
            old_models.get_model("processing", "ProductImage").objects.create(
                request_id=request.pk,
                product_id=product.pk,
                position=position,
                input_url=f"https://shop.example/{position}.jpg",
                status=status,
                reused=was_reused,
            )

    # When the migrations run, and a process of the code before them goes on uploading
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    during = old_request.objects.create(
        account_id=account.pk, public_base_url="http://testserver", quality=50
    )

    # Then each counts what its images' rows say, and the one made meanwhile none
    counts = dict(
        ProcessingRequest.objects.filter(pk__in=[again.pk, new.pk, during.pk]).values_list(
            "pk", "reused_images"
        )
    )
    assert counts == {again.pk: 2, new.pk: 0, during.pk: 0}
