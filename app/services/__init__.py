"""Plain functions that do the work, shared by views and tasks."""
