"""Integrations that host OnTheFly inside other training frameworks' loops."""
