"""Instrument and Candle move here from the trading app, without touching the database.

The tables keep their names (trading_instrument, trading_candle) and every row. Only Django's
state moves, and the two content types are renamed in place, so every audit entry, admin
history row and permission that points at them stays attached to the same object.
"""

import django.db.models.deletion
from django.db import migrations, models

import marketdata.timeframes

MOVED = ("instrument", "candle")


def content_types_to(app_label, other):
    def rename(apps, schema_editor):
        ContentType = apps.get_model("contenttypes", "ContentType")
        db = schema_editor.connection.alias
        for model in MOVED:
            old = ContentType.objects.using(db).filter(app_label=other, model=model)
            if not old.exists():
                continue  # a fresh database: post_migrate creates the new one
            # A content type already made for the new label (say, by a run that got this far)
            # has nothing pointing at it worth more than the old one's history.
            ContentType.objects.using(db).filter(app_label=app_label, model=model).delete()
            old.update(app_label=app_label)

    return rename


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("trading", "0006_fill_order_owner_key"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Instrument',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('symbol', models.CharField(max_length=40, unique=True)),
                        ('base', models.CharField(max_length=20)),
                        ('quote', models.CharField(max_length=20)),
                        ('price_tick', models.DecimalField(decimal_places=18, max_digits=38)),
                        ('quantity_step', models.DecimalField(decimal_places=18, max_digits=38)),
                        ('is_active', models.BooleanField(default=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'db_table': 'trading_instrument',
                        'ordering': ['symbol'],
                        'constraints': [models.CheckConstraint(condition=models.Q(('price_tick__gt', 0)), name='instrument_tick_positive'), models.CheckConstraint(condition=models.Q(('quantity_step__gt', 0)), name='instrument_step_positive')],
                    },
                ),
                migrations.CreateModel(
                    name='Candle',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('timeframe', models.CharField(choices=marketdata.timeframes.timeframe_choices, max_length=8)),
                        ('ts', models.DateTimeField()),
                        ('open', models.FloatField()),
                        ('high', models.FloatField()),
                        ('low', models.FloatField()),
                        ('close', models.FloatField()),
                        ('volume', models.FloatField(default=0)),
                        ('instrument', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='candles', to='marketdata.instrument')),
                    ],
                    options={
                        'db_table': 'trading_candle',
                        'ordering': ['instrument_id', 'timeframe', 'ts'],
                        'constraints': [models.UniqueConstraint(fields=('instrument', 'timeframe', 'ts'), name='candle_unique_bar'), models.CheckConstraint(condition=models.Q(('high__gte', models.F('low'))), name='candle_high_gte_low'), models.CheckConstraint(condition=models.Q(('low__gt', 0), ('volume__gte', 0)), name='candle_positive_prices')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(
            content_types_to("marketdata", "trading"), content_types_to("trading", "marketdata")
        ),
    ]
