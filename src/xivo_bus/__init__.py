"""The XiVO message bus: an AMQP 0-9-1 broker wire-compatible with RabbitMQ, and its tools."""

__version__ = "0.1.0"
