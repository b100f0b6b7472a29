"""Attacks a hostile contributor, repository or remote can try, each refused with a clear error and nothing changed."""
