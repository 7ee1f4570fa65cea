"""The mail outbox: one row per message owed to one address (OutgoingMail).

Written in the transaction of what the message is about (service.queue), so the
message exists if and only if that committed; sent after the commit, and again by
the sweep until the relay takes it. The body holds no identifier of a case (the
callers write numbers and links only), so keeping it here keeps nothing secret.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from taskforce.accounts.models import UtcDateTime, utcnow
from taskforce.extensions import db

ERROR_MAX = 1000  # characters of the relay's last answer kept on the row


class OutgoingMail(db.Model):
    """One email to one address, queued in the transaction that calls for it.

    Sent: `sent_at` set. Being sent: `claimed_until` in the future (whoever set it
    holds the row until then; a sender that died lets it lapse). Failed: `attempts`
    counted, `last_error` kept, not tried again before `next_try_at`; after
    service.ATTEMPTS_MAX it waits for a person (service.outbox_status).

    The index (sent_at, id) serves both reads of the sweep: the unsent rows
    (sent_at IS NULL), oldest first, and the sent rows old enough to delete.
    """

    __tablename__ = "mail_outbox"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_mail_outbox_unsent", "sent_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    about: Mapped[str] = mapped_column(String(32))  # survivor_alert, deconfliction_hit, ...
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(ERROR_MAX))
    next_try_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # not before, after a failure

    def __repr__(self) -> str:
        return f"<OutgoingMail {self.id} {self.about} {'sent' if self.sent_at else 'unsent'}>"
