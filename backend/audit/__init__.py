"""Supervision: the event mirror, independent verification, reconciliation and reports."""
