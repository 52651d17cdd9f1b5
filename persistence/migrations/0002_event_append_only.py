"""On PostgreSQL, the event table rejects UPDATE and DELETE: the log is append-only.

SQLite has no such trigger here; there the hash chain (verify_ledger) is the only guard.
TRUNCATE is left alone so that test databases can still be flushed.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION persistence_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'persistence_event is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS persistence_event_append_only ON persistence_event;
CREATE TRIGGER persistence_event_append_only
    BEFORE UPDATE OR DELETE ON persistence_event
    FOR EACH ROW EXECUTE FUNCTION persistence_event_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS persistence_event_append_only ON persistence_event;
DROP FUNCTION IF EXISTS persistence_event_append_only();
"""


def _run(schema_editor, sql):
    # No parameters, so the "%" in the message is not a placeholder and several
    # statements may go in one call.
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)


def forwards(apps, schema_editor):
    _run(schema_editor, CREATE)


def backwards(apps, schema_editor):
    _run(schema_editor, DROP)


class Migration(migrations.Migration):
    dependencies = [("persistence", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
