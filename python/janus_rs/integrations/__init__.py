"""Integrations with other systems; each imports its dependency only when used."""
