"""What every part of the control plane stands on: settings, the data design (one
model per table), conditional writes, errors, validation, pagination, queues, logs."""
