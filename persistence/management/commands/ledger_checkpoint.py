"""`ledger_checkpoint`: sign the event chain's head now and append it to the witnesses."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from persistence.checkpoints import (
    CheckpointRefused,
    checkpoint_write,
    signing_key,
    witness_for,
    witnesses_configured,
)


class Command(BaseCommand):
    help = (
        "Write a signed checkpoint of the ledger's head (sequence number, hash, event count) "
        "to LEDGER_CHECKPOINT_PATH and LEDGER_CHECKPOINT_DATABASE_URL, or to --to."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--to",
            action="append",
            default=[],
            metavar="WITNESS",
            help="A JSON-lines file or a postgres:// or sqlite:// URL instead of the "
            "configured witnesses; may be repeated.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        witnesses = [witness_for(spec) for spec in options["to"]] or witnesses_configured()
        if signing_key().derived:
            self.stderr.write(
                "LEDGER_CHECKPOINT_KEY is unset: signing with a key derived from SECRET_KEY "
                "(checkpoints stop verifying if SECRET_KEY changes without a fallback)."
            )
        try:
            checkpoint = checkpoint_write(witnesses=witnesses)
        except CheckpointRefused as exc:
            raise CommandError(f"checkpoint refused: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"checkpoint: seq {checkpoint.seq}, {checkpoint.event_count} events, head hash "
                f"{checkpoint.head_hash}, key {checkpoint.key_id}; written to "
                + ", ".join(witness.name for witness in witnesses)
            )
        )
