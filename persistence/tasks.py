"""Celery tasks of the persistence layer: thin wrappers around its services."""

from __future__ import annotations

from celery import shared_task

from persistence.checkpoints import checkpoint_write, witnesses_configured


@shared_task(name="persistence.tasks.ledger_checkpoint")
def ledger_checkpoint() -> dict[str, object]:
    """Celery beat's checkpoint of the ledger's head (LEDGER_CHECKPOINT_INTERVAL_SECONDS).

    A refusal (the ledger lost what the last checkpoint signed) fails the task, so it shows
    as an error in the worker's log every interval until someone looks.
    """
    witnesses = witnesses_configured()
    checkpoint = checkpoint_write(witnesses=witnesses)
    return {
        "seq": checkpoint.seq,
        "head_hash": checkpoint.head_hash,
        "event_count": checkpoint.event_count,
        "created_at": checkpoint.created_at.isoformat(),
        "witnesses": [witness.name for witness in witnesses],
    }
