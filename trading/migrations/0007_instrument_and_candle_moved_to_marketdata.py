"""Instrument and Candle now live in marketdata (see marketdata 0001): state only."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('strategies', '0003_instrument_moved_to_marketdata'),
        ('backtests', '0004_instrument_moved_to_marketdata'),
        ('marketdata', '0001_initial'),
        ('trading', '0006_fill_order_owner_key'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='position',
                    name='instrument',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='positions', to='marketdata.instrument'),
                ),
                migrations.AlterField(
                    model_name='traderollup',
                    name='instrument',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='marketdata.instrument'),
                ),
                migrations.AlterField(
                    model_name='order',
                    name='instrument',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='orders', to='marketdata.instrument'),
                ),
                migrations.AlterField(
                    model_name='trade',
                    name='instrument',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='trades', to='marketdata.instrument'),
                ),
                migrations.DeleteModel(
                    name='Candle',
                ),
                migrations.DeleteModel(
                    name='Instrument',
                ),
            ],
            database_operations=[],
        ),
    ]
