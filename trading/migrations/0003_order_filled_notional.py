"""Keep each order's exact filled notional on the order row.

Fills used to append an `OrderFilled` event to the order's stream as well as their
`FillRecorded` event to the position's, and the next fill read the notional back from the
former. Now a fill appends one event, so the running notional lives on the order. Existing
orders get it from their fills, summed exactly.
"""

from decimal import Decimal, localcontext

from django.db import migrations, models


def backfill(apps, schema_editor):
    Fill = apps.get_model("trading", "Fill")
    Order = apps.get_model("trading", "Order")
    totals: dict[int, Decimal] = {}
    with localcontext(prec=80):
        fills = Fill.objects.order_by("id").values_list("order_id", "quantity", "price")
        for order_id, quantity, price in fills.iterator(chunk_size=5000):
            totals[order_id] = totals.get(order_id, Decimal(0)) + quantity * price
    for order_id, notional in totals.items():
        Order.objects.filter(pk=order_id).update(filled_notional=notional)


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0002_trade_rollups"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="filled_notional",
            field=models.DecimalField(
                decimal_places=18,
                default=0,
                help_text="Exact sum of quantity x price over the order's fills",
                max_digits=38,
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
