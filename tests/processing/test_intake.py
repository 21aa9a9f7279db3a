"""intake.request_create stores what the CSV says, with the models' defaults, whichever
insert path the database takes (COPY on PostgreSQL, bulk INSERTs elsewhere)."""

import pytest

from accounts.models import Account
from processing import intake
from processing.models import ProcessingRequest, Product, ProductImage

HEADER = b"S. No.,Product Name,Input Image Urls\n"


@pytest.mark.django_db
def test_request_create_stores_products_and_images_in_order_with_defaults(account: Account) -> None:
    # Given a CSV longer than one insert batch, with a repeated URL
    rows = b"".join(
        b'%d,Name %d,"https://shop.example/%d-a.jpg, https://shop.example/%d-b.jpg"\n'
        % (n, n, n, n)
        for n in range(1, 2502)
    )
    data = HEADER + rows + b"9999,Last,https://shop.example/1-a.jpg\n"

    # When it is stored
    request = intake.request_create(
        account=account, csv_data=data, public_base_url="http://testserver/"
    )

    # Then every product and image is there, in input order, with the models' defaults
    stored = ProcessingRequest.objects.get(pk=request.pk)
    assert (stored.total_products, stored.total_images) == (2502, 5003)
    products = list(Product.objects.filter(request=request).order_by("position"))
    assert [p.position for p in products] == list(range(2502))
    assert [p.serial_number for p in products[:2]] == [1, 2]
    assert products[-1].serial_number == 9999
    assert products[0].product_name == "Name 1"
    assert products[0].input_image_urls == (
        "https://shop.example/1-a.jpg,https://shop.example/1-b.jpg"
    )
    assert products[0].output_image_urls == ""
    images = list(
        ProductImage.objects.filter(request=request).order_by("product__position", "position")
    )
    assert len(images) == 5003
    assert len({image.pk for image in images}) == 5003
    first = images[0]
    assert (first.product_id, first.position, first.input_url) == (
        products[0].pk,
        0,
        "https://shop.example/1-a.jpg",
    )
    assert images[-1].input_url == "https://shop.example/1-a.jpg"
    assert images[-1].product_id == products[-1].pk
    assert {
        (i.status, i.error_code, i.output_name, i.attempts, i.kept_original, i.input_bytes)
        for i in images
    } == {("pending", "", "", 0, False, None)}
    # And a second request gets ids of its own (the sequence moved on)
    again = intake.request_create(
        account=account, csv_data=data, public_base_url="http://testserver/"
    )
    assert not set(Product.objects.filter(request=again).values_list("pk", flat=True)) & {
        p.pk for p in products
    }
