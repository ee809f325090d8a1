"""The node's supervisor process: its public front, its worker processes, the registry
heartbeat, the command queue and ECS's view of the task. It never loads the worker
stack (aiortc and what stands on it): tests/media/test_layers.py."""
