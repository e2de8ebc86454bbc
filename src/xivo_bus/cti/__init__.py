"""Call forms: the agent's web form, the HTTP API and XiVO's CTI ``call_form_result``
message, each turned into a ``call_form_result`` event published through
``xivo_bus.client`` over an AMQP URL (our broker or RabbitMQ alike).

One module per concern: ``users`` (the users file, password hashes), ``forms`` (form
definitions and validation), ``messages`` (the CTI message), ``outbox`` (submissions kept
on disk until the broker confirms them), ``watch`` (events seen on the bus, for the live
page), ``app`` (HTTP routes, pages, API) and ``server`` (running it under uvicorn).
"""
