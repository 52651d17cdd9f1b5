"""The instrument foreign keys now name marketdata.Instrument: same table, so state only."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('backtests', '0003_run_sharing_and_liveness'),
        ('marketdata', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='backtestrun',
                    name='instrument',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='backtest_runs', to='marketdata.instrument'),
                ),
                migrations.AlterField(
                    model_name='sweep',
                    name='instrument',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='sweeps', to='marketdata.instrument'),
                ),
            ],
            database_operations=[],
        ),
    ]
