"""AMQP 0-9-1 wire format, sans-I/O: bytes to frames and events, and back."""
