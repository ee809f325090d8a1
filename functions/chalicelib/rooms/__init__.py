"""Spaces and who does what in them: the lifecycle, roles, the hosting policy, the
audience count, reminders, recordings (HLS), and Spaces that end by themselves."""
