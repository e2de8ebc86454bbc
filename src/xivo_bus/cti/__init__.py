"""Call forms: the agent's web form, the HTTP API and XiVO's CTI ``call_form_result``
message, each turned into a ``call_form_result`` event published through
``xivo_bus.client`` over an AMQP URL (our broker or RabbitMQ alike); and the CTI server
XiVO desktop clients log in to, with the forms pushed to agents on a call ("sheets").

One module per concern: ``users`` (the users file, password hashes), ``forms`` (form
definitions and validation), ``messages`` (the CTI message), ``outbox`` (submissions kept
on disk until the broker confirms them), ``watch`` (events seen on the bus, for the live
page), ``app`` (HTTP routes, pages, API), ``codec`` (the CTI line framing), ``protocol``
(the CTI session, sans-I/O), ``listener`` (CTI connections on asyncio), ``sheets`` (the
``sheet`` payload and the routing of pushed forms) and ``server`` (running it all).
"""
