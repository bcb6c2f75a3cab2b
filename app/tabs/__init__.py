"""One module per tab (create, history) plus the queue panel; each has `build()` and `wire()`."""
