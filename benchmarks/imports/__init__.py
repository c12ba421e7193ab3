"""Bulk import benchmark (issue 5): end to end, beside the raw ceiling and the ORM."""
