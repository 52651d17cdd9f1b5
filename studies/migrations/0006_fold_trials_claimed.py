from django.db import migrations, models
from django.db.models import Count


def claimed_from_rows(apps, schema_editor):  # type: ignore[no-untyped-def]
    """Folds saved before the counter: their trials, counted."""
    StudyFold = apps.get_model("studies", "StudyFold")
    folds = StudyFold.objects.annotate(rows=Count("trials")).filter(rows__gt=0)
    for fold in folds.only("pk").iterator():
        StudyFold.objects.filter(pk=fold.pk).update(trials_claimed=fold.rows)


class Migration(migrations.Migration):
    dependencies = [
        ("studies", "0005_trial_engine_seconds"),
    ]

    operations = [
        migrations.AddField(
            model_name="studyfold",
            name="trials_claimed",
            field=models.PositiveIntegerField(
                default=0,
                help_text="Trials created for the fold so far (its slots claimed); with trials_done, how many are in flight",
            ),
        ),
        migrations.RunPython(claimed_from_rows, migrations.RunPython.noop),
    ]
