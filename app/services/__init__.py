"""Services behind the UI: the one GPU job runner and the bundle of long-lived objects."""
