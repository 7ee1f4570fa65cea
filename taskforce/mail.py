"""Outgoing mail: one function, sent through the configured SMTP relay.

Bodies never carry identifiers of a case (phone numbers, names): callers pass
a reference and a link, and the reader signs in to see more.
"""
from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterable
from email.message import EmailMessage

from flask import current_app

from taskforce.jobs import job

log = logging.getLogger(__name__)


def send_mail(*, to: Iterable[str], subject: str, body: str) -> EmailMessage:
    cfg = current_app.config
    msg = EmailMessage()
    msg["From"] = cfg["MAIL_FROM"]
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg.set_content(body)
    if not cfg["SMTP_HOST"]:
        log.info("mail (no SMTP_HOST set, not sent): to=%s subject=%s", msg["To"], subject)
        return msg
    with smtplib.SMTP(cfg["SMTP_HOST"], cfg["SMTP_PORT"], timeout=10) as smtp:
        smtp.send_message(msg)
    return msg


@job(autoretry_for=(OSError, smtplib.SMTPException), retry_backoff=True, max_retries=5)
def deliver(to: list[str], subject: str, body: str) -> None:
    """Background delivery with retries: a relay that is briefly down loses nothing."""
    send_mail(to=to, subject=subject, body=body)
