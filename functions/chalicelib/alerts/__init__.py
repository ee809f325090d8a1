"""Alerts: what the Spaces table's stream means, the fan-out of one event to a page of
followers at a time, and delivery to the bar, WebSockets and push."""
